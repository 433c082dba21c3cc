"""The forms of an MI estimate (direct, orthogonal, cross) and where each is held.

Torch-free, so the command lines and the sweep's reports can name the forms without loading torch.
"""

from __future__ import annotations

# Each form and its ``MIEstimate`` field; the field's standard error is the field + "_stderr".
FORM_FIELDS = {"direct": "mi", "orthogonal": "mi_orthogonal", "cross": "mi_cross"}
