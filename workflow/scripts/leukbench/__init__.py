"""leukbench: a reproducible benchmark of leukemia blood-smear image classifiers."""

__version__ = "0.1.0"
