"""A minimal Django project instrumented with django-prometheus, served by
uWSGI with the Prometheus plugin (see ../uwsgi.ini)."""
import os

SECRET_KEY = os.environ.get('DJANGO_SECRET_KEY', 'demo-only-not-secret')
DEBUG = False
ALLOWED_HOSTS = ['*']
ROOT_URLCONF = 'demo.urls'
WSGI_APPLICATION = 'demo.wsgi.application'
USE_TZ = True

INSTALLED_APPS = [
    'django_prometheus',
    'demo',
]

# django-prometheus: the first and last middleware time every request.
MIDDLEWARE = [
    'django_prometheus.middleware.PrometheusBeforeMiddleware',
    'django_prometheus.middleware.PrometheusAfterMiddleware',
]

DATABASES = {}
LOGGING = {'version': 1, 'disable_existing_loggers': False}
