from django.urls import re_path

from djecho.views import echo

urlpatterns = [re_path(r"", echo)]
