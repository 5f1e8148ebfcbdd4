"""Reporting: the end-of-run table, run plots, loggers, and the sweep report (``imbal report``)."""
