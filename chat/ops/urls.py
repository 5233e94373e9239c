"""Probes and metrics, at the root where load balancers and Prometheus expect them."""

from django.urls import path

from chat.ops import views

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("metrics", views.metrics_view, name="metrics"),
]
