"""The notifier: mails the user once an album settled (`handler.py`)."""
