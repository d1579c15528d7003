"""Django flavour of the reload app (what bench/reload.py serves by default): a minimal
Django project configured in code, one view answering like wsgi.py. Needs Django."""

import django
from django.conf import settings

from reloadapp import common

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="reloadapp-not-secret",
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=__name__,
        MIDDLEWARE=["django.middleware.common.CommonMiddleware"],
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth"],
        DATABASES={},
        USE_TZ=True,
    )
    django.setup()

from django.http import JsonResponse  # noqa: E402
from django.urls import path  # noqa: E402


def index(request):
    return JsonResponse(common.info())


def slow_view(request):
    return JsonResponse(common.slow(float(request.GET.get("s", "1"))))


def warmup_view(request):
    return JsonResponse(common.warmup())


urlpatterns = [path("", index), path("slow", slow_view), path("warmup", warmup_view)]

from django.core.wsgi import get_wsgi_application  # noqa: E402

application = get_wsgi_application()
