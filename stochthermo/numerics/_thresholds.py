"""Thresholds shared by every role that decides whether a coefficient of the dynamics is finite."""

#: |H_t| τ or T_t τ beyond this counts as divergent: a linear force or a temperature that blows up where
#: m_t → 0 (cos(π/2) is 6e-17, not 0, in floating point, so "infinite" must be a threshold, not a test for ∞)
DIVERGENCE = 1e8
