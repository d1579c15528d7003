from django.urls import path

from uwsgiproj import views

urlpatterns = [
    path("info", views.info),
    path("reload", views.reload),
    path("chain", views.chain),
    path("workers", views.workers),
    path("imports", views.imports),
]
