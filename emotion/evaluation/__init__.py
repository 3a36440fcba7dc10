"""Evaluation: scoring a model on a split (``evaluate``), leak-aware scores without the faces that have a training
twin (``twins``), McNemar's test between two models or two TTAs (``paired``), and temperature calibration
(``calibration``). The DataModule only loads data; what evaluation does with it lives here."""
