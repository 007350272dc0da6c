"""The three services: the API (`api/`), the uploader (`uploader/`), the notifier (`notifier/`)."""
