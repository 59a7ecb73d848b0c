"""The status of a relation (an inequality of the paper checked on a run), as every observer records it.

A status variable holds, per seed, :data:`HOLDS` (1), :data:`VIOLATED` (0), :data:`UNRESOLVED` (2: a side known
only within a confidence interval that straddles the other side) or :data:`NOT_APPLICABLE` (−1),
as ``int8``, with the CF attributes :data:`STATUS_ATTRS` (``flag_values``, ``flag_meanings``); the summary
table reads them through :class:`~stochthermo.RelationColumn`.
"""

from enum import IntEnum

import numpy as np


class RelationStatus(IntEnum):
    """Whether a relation holds on a run."""

    NOT_APPLICABLE = -1
    VIOLATED = 0
    HOLDS = 1
    UNRESOLVED = 2


HOLDS, VIOLATED, NOT_APPLICABLE, UNRESOLVED = (int(RelationStatus.HOLDS), int(RelationStatus.VIOLATED),
                                               int(RelationStatus.NOT_APPLICABLE), int(RelationStatus.UNRESOLVED))
#: the CF attributes of a status variable
STATUS_ATTRS = {"flag_values": np.array([NOT_APPLICABLE, VIOLATED, HOLDS, UNRESOLVED], dtype=np.int8),
                "flag_meanings": "not_applicable violated holds unresolved"}
