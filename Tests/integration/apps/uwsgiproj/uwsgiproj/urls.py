from django.urls import path

from uwsgiproj import views

urlpatterns = [
    path("info", views.info),
    path("reload", views.reload),
    path("chain", views.chain),
    path("imports", views.imports),
]
