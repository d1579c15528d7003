import os

import apus
from django.core.wsgi import get_wsgi_application

# What the module says while the app is imported (in the preloader, before the fork, with
# --preload). Django imports the views later, at the first request.
IMPORT_PID = os.getpid()
IMPORT_WORKER_ID = apus.worker_id()

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "uwsgiproj.settings")
application = get_wsgi_application()
