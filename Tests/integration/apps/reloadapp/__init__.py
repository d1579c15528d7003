"""The reload test app: see wsgi.py (plain WSGI) and djwsgi.py (the same under Django)."""
