"""The price server: a Flask app (``app.create_app``), its model router, and the AWS Lambda handler."""
