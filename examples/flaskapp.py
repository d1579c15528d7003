"""A small Flask app: `apus flaskapp:app` from this folder (needs Flask)."""
from flask import Flask, request, jsonify

app = Flask(__name__)


@app.route("/")
def index():
    return "Hello from Flask!\n"


@app.route("/echo", methods=["GET", "POST", "PUT"])
def echo():
    body = request.get_data()
    return jsonify(method=request.method, path=request.path, args=request.args.to_dict(flat=False),
                   body_length=len(body), body=body.decode("latin-1"),
                   content_type=request.content_type, remote_addr=request.remote_addr)
