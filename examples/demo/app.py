"""Demo WSGI app: / answers at once, /slow after a short sleep, /error fails,
/cache counts hits in uWSGI's cache."""
import random
import time


def application(environ, start_response):
    path = environ.get('PATH_INFO', '/')
    status = '200 OK'
    if path == '/slow':
        time.sleep(random.uniform(0.05, 0.5))
    elif path == '/error':
        raise RuntimeError('demo failure')
    elif path == '/cache':
        import uwsgi
        key = 'k%d' % random.randint(0, 20)
        if uwsgi.cache_get(key, 'demo') is None:
            uwsgi.cache_set(key, b'1', 0, 'demo')
    elif path != '/':
        status = '404 Not Found'
    body = ('%s %s\n' % (status, path)).encode()
    start_response(status, [('Content-Type', 'text/plain'), ('Content-Length', str(len(body)))])
    return [body]
