from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt


@csrf_exempt
def echo(request):
    """Answer any request with the request itself, as JSON."""
    meta = request.META
    body = request.body
    return JsonResponse({
        "method": request.method,
        "path": request.path,
        "path_info": meta.get("PATH_INFO"),
        "script_name": meta.get("SCRIPT_NAME"),
        "query": {k: request.GET.getlist(k) for k in request.GET},
        "headers": dict(request.headers.items()),
        "remote_addr": meta.get("REMOTE_ADDR"),
        "server_name": meta.get("SERVER_NAME"),
        "server_port": meta.get("SERVER_PORT"),
        "scheme": request.scheme,
        "content_length": meta.get("CONTENT_LENGTH"),
        "body_length": len(body),
        "server_software": meta.get("SERVER_SOFTWARE"),
    })
