"""The outside services besides the broker and the store: the bucket (S3) and the
Facebook Graph API, each with its fake for tests beside it."""
