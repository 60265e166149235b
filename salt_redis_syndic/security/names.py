"""The one pattern for a master's name (a DC, a MoM, a ``master_id``).

A name becomes a Redis key part, a file name under ``state_dir`` and an event tag part, so
it is checked the same way everywhere: in the settings, in the DC keyring and in every wire
record.  ``\\Z``, not ``$``: ``$`` also matches before a trailing newline.
"""

from __future__ import annotations

import re

# Without anchors, for patterns that embed a name (the key mirror's marker).
NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
NAME_RE = re.compile(rf"^{NAME_PATTERN}\Z", re.ASCII)

