"""Evaluation: scoring a model on a split (``evaluate``), leak-aware scores without the faces that have a training
twin (``twins``), McNemar's test between two models or two TTAs (``paired``), temperature calibration
(``calibration``), and label issues in the training split by out-of-fold predictions (``label_issues``). The
DataModule only loads data; what evaluation does with it lives here."""
