import time

from django.http import HttpResponse, JsonResponse
from prometheus_client import Counter

ITEMS_SEEN = Counter('demo_items_viewed', 'Items viewed, by parity.', ['parity'])


def index(request):
    return HttpResponse('uwsgi-prometheus demo\n', content_type='text/plain')


def item(request, item_id):
    ITEMS_SEEN.labels('even' if item_id % 2 == 0 else 'odd').inc()
    return JsonResponse({'id': item_id})


def slow(request):
    time.sleep(0.2)
    return HttpResponse('slow\n', content_type='text/plain')


def error(request):
    return HttpResponse('failed\n', status=500, content_type='text/plain')
