"""The evaluation protocols' roster: importing it registers every protocol (the classification ones register in
``protocols.py``, the dense ones in ``dense.py``, zero-shot in ``zeroshot.py``)."""

from . import dense, zeroshot  # noqa: F401
