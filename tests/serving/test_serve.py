"""The web app and API (cnnlab.serving.serve) through FastAPI's TestClient, with a small MNIST model."""

import base64
import io
import re
import socket

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from cnnlab.cli import main
from cnnlab.errors import CnnlabError
from cnnlab.serving.serve import check_port_free
from cnnlab.using.predict import png_bytes, predict_files
from tests.helpers import png_claiming
from tests.photolike import compose_number, render_photo
from tests.serving.conftest import LOCAL, local_client


@pytest.fixture(scope="module")
def client(mnist_run):
    return local_client(mnist_run)


@pytest.fixture(scope="module")
def digit_photo(mnist):
    return render_photo(mnist.test_images[0].numpy(), np.random.default_rng(1), 120)


def test_page_and_assets_are_served_and_nothing_comes_from_elsewhere(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<canvas id="pad"' in page.text and 'id="clear"' in page.text and 'type="file"' in page.text
    assert 'name="viewport"' in page.text  # phone-sized screens
    assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', page.text)
    assert sorted(assets) == ["/static/app.css", "/static/app.js", "/static/inside.js", "/static/train.js"]
    for text in [page.text, *(client.get(a).text for a in assets)]:
        assert not re.search(r"https?://|//cdn|@import|fonts\.", text), "every asset must come from the app"


def test_health_and_model_facts(client, mnist_run):
    assert client.get("/healthz").json() == {"status": "ok"}
    facts = client.get("/api/model").json()
    assert facts["architecture"] == "cnn-fast" and facts["classes"] == [str(d) for d in range(10)]
    assert facts["parameters"] == 139_002 and 0.9 < facts["test_accuracy"] <= 1 and facts["name"] == "run"
    assert facts["training"] is True  # the page shows its Train tab


def test_explain_answers_with_a_heatmap_and_every_layer(client, digit_photo):
    assert client.get("/api/model").json()["methods"] == ["saliency", "integrated-gradients", "occlusion", "gradcam"]
    for method in ("integrated-gradients", "gradcam"):
        reply = client.post(f"/api/explain?method={method}", files={"file": ("seven.jpg", digit_photo)})
        assert reply.status_code == 200, reply.text
        answer = reply.json()
        assert answer["label"] == "7" and answer["method"] == method and answer["target"] == "7"
        heat = Image.open(io.BytesIO(base64.b64decode(answer["heatmap"])))
        assert heat.size == (28, 28) and heat.mode == "RGB"
        conv1, conv2, dense1, output = answer["layers"]
        assert (conv1["name"], conv1["shape"], conv1["columns"]) == ("conv 1", [16, 20, 20], 16)
        maps = Image.open(io.BytesIO(base64.b64decode(conv2["image"])))
        assert maps.size == (16 * 9 - 1, 2 * 9 - 1)  # 32 maps of 8x8, 16 to a row, 1 pixel apart
        assert len(conv2["channels"]) == 32 and all(low <= high for low, high in conv2["channels"])
        assert dense1["units"] == 256 and len(dense1["values"]) == 256 and "classes" not in dense1
        assert output["classes"] == [str(d) for d in range(10)] and max(output["values"]) == output["values"][7]


def test_explain_refuses_an_unknown_method_and_an_empty_image(client):
    reply = client.post("/api/explain?method=heat", files={"file": ("x.png", png_bytes(np.zeros((40, 40), np.uint8)))})
    assert reply.status_code == 400 and "unknown method 'heat'" in reply.json()["error"]
    blank = png_bytes(np.full((60, 60), 255, np.uint8))
    reply = client.post("/api/explain", files={"file": ("blank.png", blank)})
    assert reply.status_code == 422 and "ink" in reply.json()["error"]


def test_multipart_upload_answers_as_cnnlab_predict_does(client, mnist_run, digit_photo, tmp_path):
    reply = client.post("/api/predict", files={"file": ("seven.jpg", digit_photo, "image/jpeg")})
    assert reply.status_code == 200
    answer = reply.json()
    (tmp_path / "seven.jpg").write_bytes(digit_photo)
    same, = predict_files(mnist_run, [tmp_path / "seven.jpg"])
    assert answer["label"] == same.label == "7" and answer["confidence"] == pytest.approx(same.confidence, abs=1e-5)
    assert list(answer["probabilities"]) == [str(d) for d in range(10)]
    assert sum(answer["probabilities"].values()) == pytest.approx(1, abs=1e-4)
    assert set(answer) == {"label", "confidence", "top", "uncertain", "probabilities", "preprocessed"}  # no path
    seen = Image.open(io.BytesIO(base64.b64decode(answer["preprocessed"])))
    assert seen.size == (28, 28) and seen.format == "PNG"


def test_json_base64_and_data_urls_give_the_same_answer(client, digit_photo):
    by_file = client.post("/api/predict", files={"file": ("d.jpg", digit_photo)}).json()
    encoded = base64.b64encode(digit_photo).decode()
    for image in (encoded, "data:image/jpeg;base64," + encoded):
        assert client.post("/api/predict", json={"image": image}).json() == by_file


def test_number_mode_reads_every_digit(client, mnist, mnist_run, tmp_path):
    digits = [mnist.test_images[i].numpy() for i in (0, 1, 2)]  # MNIST's first test digits: 7, 2, 1
    photo = render_photo(compose_number(digits, np.random.default_rng(0)), np.random.default_rng(0), 90)
    answer = client.post("/api/predict?number=true", files={"file": ("n.png", photo)}).json()
    (tmp_path / "n.png").write_bytes(photo)
    same, = predict_files(mnist_run, [tmp_path / "n.png"], number=True)
    assert answer["number"] == same.number and len(answer["digits"]) == 3
    assert Image.open(io.BytesIO(base64.b64decode(answer["preprocessed"]))).size == (3 * 28, 28)
    assert {"label", "confidence", "probabilities", "preprocessed"} <= set(answer["digits"][0])


def test_over_the_upload_limit_is_413_and_says_the_limit_as_configured(mnist_run):
    small = local_client(mnist_run, max_upload_mb=0.5)
    reply = small.post("/api/predict", files={"file": ("big.png", b"\0" * 600_000)})
    assert reply.status_code == 413
    assert reply.json()["error"] == "the upload is 0.6 MB; the limit is 0.5 MB (--max-upload-mb)"
    five = local_client(mnist_run, max_upload_mb=5)
    reply = five.post("/api/predict", content=b"\0" * 5_500_000, headers={"content-type": "application/json"})
    assert reply.status_code == 413 and reply.json()["error"].endswith("the limit is 5 MB (--max-upload-mb)")
    assert reply.headers["connection"] == "close"  # its body is not read: nothing more is taken from that client


@pytest.mark.parametrize(("settings", "match"), [({"max_upload_mb": float("inf")}, "--max-upload-mb must be"),
                                                 ({"token": "short"}, "at least 16 characters")])
def test_create_app_refuses_settings_cnnlab_serve_refuses(mnist_run, settings, match):
    from cnnlab.errors import CnnlabError
    from cnnlab.serving.serve import ServeSettings, create_app

    with pytest.raises(CnnlabError, match=match):
        create_app(mnist_run, ServeSettings(**settings))


@pytest.mark.parametrize("depth", [100, 10_000])
def test_json_nested_deeply_is_a_400_not_a_500(client, depth):
    body = '{"image": ' + "[" * depth + "]" * depth + "}"
    reply = client.post("/api/predict", content=body, headers={"content-type": "application/json"})
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"].startswith("the body: JSON nested too deeply (the limit is 32 levels)")
    reply = client.post("/api/explain", content=body, headers={"content-type": "application/json"})
    assert reply.status_code == 400 and "nested too deeply" in reply.json()["error"]


@pytest.mark.parametrize(("send", "status", "words"), [
    (dict(content=b"hello", headers={"content-type": "text/plain"}), 415, "multipart/form-data"),
    (dict(content=b"hello"), 415, "without a content type"),
    (dict(files={"file": ("x.png", b"not an image at all")}), 415, "not a readable image"),
    (dict(files={"other": ("x.png", b"abc")}), 400, "no file field"),
    (dict(content=b"{not json", headers={"content-type": "application/json"}), 400, "not valid JSON"),
    (dict(json={"picture": "abc"}), 400, 'no "image"'),
    (dict(json={"image": "%%% not base64"}), 400, "not valid base64"),
    (dict(json={"image": "data:"}), 400, '"image" is a data: URL without its data'),
    (dict(json={"image": "data:image/png;base64"}), 400, '"image" is a data: URL without its data'),
    (dict(files={"file": ("bomb.png", png_claiming(20_000, 20_000))}), 413, "too many pixels"),
    (dict(files={"file": ("blank.png", png_bytes(np.full((50, 50), 230, np.uint8)))}), 422, "no ink"),
])
def test_bad_requests_get_a_json_error_with_the_right_status(client, send, status, words):
    reply = client.post("/api/predict", **send)
    assert reply.status_code == status and words in reply.json()["error"], reply.text
    assert "\n" not in reply.json()["error"]


def test_bad_parameters_and_unknown_paths_are_json_errors(client, digit_photo):
    reply = client.post("/api/predict?number=maybe", files={"file": ("d.jpg", digit_photo)})
    assert reply.status_code == 400 and "number" in reply.json()["error"]
    assert client.get("/nowhere").json() == {"error": "Not Found"}


def test_a_bug_in_a_route_is_a_json_500_and_its_traceback_goes_to_the_log(mnist_run):
    app = local_client(mnist_run, train=False).app

    @app.get("/api/broken")
    def broken() -> dict:
        raise ZeroDivisionError("division by zero")

    client = TestClient(app, base_url=LOCAL, raise_server_exceptions=False)
    reply = client.get("/api/broken")
    assert reply.status_code == 500 and reply.json()["error"] == (
        "the server failed on this request (ZeroDivisionError): a bug in cnnlab, its log has the details; please "
        "report it")
    with pytest.raises(ZeroDivisionError):  # raised on after the answer, for the server's log
        TestClient(app, base_url=LOCAL).get("/api/broken")


def test_openapi_docs_describe_both_request_forms(client):
    assert client.get("/docs").status_code == 200
    body = client.get("/openapi.json").json()["paths"]["/api/predict"]["post"]["requestBody"]["content"]
    assert set(body) == {"multipart/form-data", "application/json"}


def test_a_busy_port_is_a_clear_error(mnist_run, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(CnnlabError, match="choose another --port"):
            check_port_free("127.0.0.1", port)
        assert main(["serve", str(mnist_run), "--port", str(port)]) == 2
    assert "cannot listen on 127.0.0.1" in capsys.readouterr().err
    assert main(["serve", str(mnist_run), "--port", "70000"]) == 2


def test_a_colour_model_takes_uploads_and_answers_in_colour(colour_run):
    colour = local_client(colour_run)
    facts = colour.get("/api/model").json()
    assert facts["drawing"] is False and facts["channels"] == 3 and facts["classes"] == ["blue", "green", "red"]
    assert "plain resize to 64x64 RGB" in facts["preprocessing"]
    held_out = colour_run.parent / "held-out" / "green" / "0.png"
    reply = colour.post("/api/predict", files={"file": ("green.png", held_out.read_bytes(), "image/png")})
    assert reply.status_code == 200 and reply.json()["label"] == "green"
    seen = Image.open(io.BytesIO(base64.b64decode(reply.json()["preprocessed"])))
    assert seen.mode == "RGB" and seen.size == (64, 64)
    number = colour.post("/api/predict?number=true", files={"file": ("g.png", held_out.read_bytes(), "image/png")})
    assert number.status_code == 422 and "28x28 grey digit model" in number.json()["error"]
