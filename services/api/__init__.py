"""The API: the JSON API and the web pages over one Flask app (`app.create_app`)."""
