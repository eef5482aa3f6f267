"""Pre-training objectives (MoCo-v2, SimCLR, BYOL), registered in the engine's objective registry
(``train/objective.py``); ``pretrain/__init__.py`` lists them."""
