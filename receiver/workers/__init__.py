"""The background process: folds the inbox, polls GBG, expires and purges (APScheduler)."""
