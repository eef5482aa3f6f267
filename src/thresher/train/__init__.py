"""The engine every stage trains with: the one loop, ``train_on``, trainable-parameter sets, the training, optimiser
and LR configs, LR schedules, the data-schedule and objective interfaces, and the supervised objective and its head.
"""
