"""The training pipeline: train.py (and train.sh) are its command line, trainer.Trainer the run."""
