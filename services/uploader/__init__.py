"""The uploader: sends each image of an album to the user's Facebook Page (`handler.py`)."""
