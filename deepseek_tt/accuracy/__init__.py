"""Accuracy helpers: the `.refpt` reader (refpt.py), teacher-forced metrics, PCC."""
