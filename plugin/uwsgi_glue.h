// The one include of uWSGI's header, generated from the uwsgi binary the
// plugin is built for (`uwsgi --dot-h`), compiled with that binary's
// `uwsgi --cflags`. Only plugin/ includes this.
#pragma once

#include "uwsgi.h"
#include "uwsgi_prometheus_build.h"  // UWSGI_PROMETHEUS_BUILT_CFLAGS
