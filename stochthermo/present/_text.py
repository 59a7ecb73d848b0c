r"""Docstrings as a terminal shows them: reStructuredText roles and LaTeX math rendered as plain Unicode text.

``stochthermo describe`` prints a plugin's docstrings, which are written for the documentation site
(``:math:`\hat\nu_t```, ``:class:`~stochthermo.Run```, ``.. math::`` blocks). :func:`plain_text` turns them
into what a reader would write by hand: ``ν̂_t``, ``Run``, an indented formula.
"""

from __future__ import annotations

import re
import unicodedata

#: LaTeX commands and their Unicode text
SYMBOLS = {
    "alpha": "α", "beta": "β", "gamma": "γ", "Gamma": "Γ", "delta": "δ", "Delta": "Δ", "epsilon": "ε",
    "varepsilon": "ε", "eta": "η", "theta": "θ", "kappa": "κ", "lambda": "λ", "Lambda": "Λ", "mu": "μ", "nu": "ν",
    "xi": "ξ", "pi": "π", "rho": "ρ", "sigma": "σ", "Sigma": "Σ", "tau": "τ", "phi": "φ", "varphi": "φ", "Phi": "Φ",
    "chi": "χ", "psi": "ψ", "omega": "ω", "Omega": "Ω", "nabla": "∇", "partial": "∂", "int": "∫", "sum": "Σ",
    "prod": "Π", "infty": "∞", "cdot": "·", "times": "×", "le": "≤", "leq": "≤", "ge": "≥", "geq": "≥",
    "approx": "≈", "ne": "≠", "neq": "≠", "to": "→", "rightarrow": "→", "mapsto": "↦", "in": "∈", "dagger": "†",
    "mid": "|", "lVert": "‖", "rVert": "‖", "Vert": "‖", "langle": "⟨", "rangle": "⟩", "sim": "~", "propto": "∝",
    "ln": "ln", "log": "log", "exp": "exp", "min": "min", "max": "max", "quad": "  ", "qquad": "    ",
    "succ": "≻", "prec": "≺", "left": "", "right": "", "big": "", "Big": "", ",": " ", ";": " ", "!": "",
    "dot": "", "top": "ᵀ",
}
#: combining marks of the accent commands
ACCENTS = {"hat": "\u0302", "tilde": "\u0303", "bar": "\u0304", "dot": "\u0307", "vec": "\u20d7"}
ROLE = re.compile(r":(?:class|func|meth|mod|data|attr|obj|exc|ref):`~?([^`]+)`")
MATH_ROLE = re.compile(r":math:`([^`]+)`")


def latex_text(formula: str) -> str:
    """A LaTeX formula as Unicode text (the common commands; anything else keeps its name)."""
    text = formula
    for _ in range(3):  # nested \frac{\sqrt{...}}{...}
        text = re.sub(r"\\[dt]?frac\{([^{}]*)\}\{([^{}]*)\}", r"(\1)/(\2)", text)
        text = re.sub(r"\\sqrt\{([^{}]*)\}", r"√(\1)", text)
        text = re.sub(r"\\[dt]?frac(\d)(\d)", r"\1/\2", text)
        text = re.sub(r"\\(?:mathrm|mathbf|mathcal|mathbb|operatorname|text|boldsymbol)\{([^{}]*)\}", r"\1", text)
        text = re.sub(r"\\(" + "|".join(ACCENTS) + r")\{([^{}]*)\}", lambda m: m.group(2) + ACCENTS[m.group(1)], text)
    text = re.sub(r"\\(" + "|".join(ACCENTS) + r")\s*\\?([A-Za-z])(?![A-Za-z])",
                  lambda m: (SYMBOLS.get(m.group(2), m.group(2)) if len(m.group(2)) > 1 else m.group(2))
                  + ACCENTS[m.group(1)], text)
    text = re.sub(r"\\(" + "|".join(ACCENTS) + r")\s*\\([A-Za-z]+)",
                  lambda m: SYMBOLS.get(m.group(2), m.group(2)) + ACCENTS[m.group(1)], text)
    text = re.sub(r"\\(mathcal|mathrm|mathbb)\s*([A-Za-z])", r"\2", text)
    text = re.sub(r"\\([A-Za-z]+|[,;!])", lambda m: SYMBOLS.get(m.group(1), m.group(1)), text)
    text = re.sub(r"\{([^{}]*)\}", r"\1", text)
    return unicodedata.normalize("NFC", re.sub(r"[ \t]+", " ", text).strip())


def plain_text(docstring: str) -> str:
    """A reStructuredText docstring as plain text: math rendered, cross-reference roles reduced to the name,
    ``literal`` kept as 'literal', ``.. math::`` blocks indented formulas."""
    text = MATH_ROLE.sub(lambda m: latex_text(m.group(1)), docstring)
    text = ROLE.sub(lambda m: m.group(1).rsplit(".", 1)[-1] if m.group(0).count("~") else m.group(1), text)
    lines, out, in_math = text.splitlines(), [], False
    for line in lines:
        if line.strip().startswith(".. math::"):
            in_math = True
            rest = line.strip()[len(".. math::"):].strip()
            if rest:
                out.append("    " + latex_text(rest))
            continue
        if in_math and (line.startswith((" ", "\t")) or not line.strip()):
            out.append("    " + latex_text(line) if line.strip() else "")
            continue
        in_math = False
        out.append(line)
    return re.sub(r"``([^`]+)``", r"'\1'", "\n".join(out))
