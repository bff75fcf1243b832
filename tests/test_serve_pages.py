"""The server's pages load nothing from elsewhere: ``/`` (the playground), ``/docs`` (Swagger UI) and
``/redoc`` (ReDoc), fetched over real loopback HTTP with every asset they reference, name no ``http://``
or ``https://`` URL outside the server; and the playground ships in the wheel as package data.
(``tests/test_playground.py`` also records what a real browser requests on these pages.)"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest
from playground_steps import make_prompts

ROOT = Path(__file__).resolve().parents[1]
URL = re.compile(r"https?://[^\s\"'`)<>]+")
# In a vendor bundle, a URL assigned as something's source (ReDoc drew its logo from a CDN this way); an
# href there is a link the reader may follow (ReDoc's "API docs by Redocly"), not something the page loads.
SOURCE_URL = re.compile(r"""\bsrc\s*[:=]\s*["'`](https?://[^"'`]+)""")
CSS_URL = re.compile(r"""url\(\s*["']?(?!data:)([^"')]+)""")


class Assets(HTMLParser):
    """The URLs a page loads (script src, link href, img src) and the text of its inline scripts."""

    def __init__(self):
        super().__init__()
        self.urls: list[str] = []
        self.inline: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "script":
            self._in_script = "src" not in attrs
        for name in ("src", "href") if tag in ("script", "link", "img", "iframe") else ():
            if attrs.get(name):
                self.urls.append(attrs[name])

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.inline.append(data)


@pytest.fixture(scope="module")
def base(minilm, tmp_path_factory, ptune_server):
    folder = make_prompts(minilm, tmp_path_factory.mktemp("pages"), {
        "topic": ("classification", "prompt", ["world", "sports"], "accuracy", 1)})
    with ptune_server(folder) as port:
        yield f"http://127.0.0.1:{port}"


@pytest.mark.parametrize("page", ["/", "/docs", "/redoc"])
def test_pages_load_every_asset_from_the_server(base, page):
    with httpx.Client(base_url=base, timeout=60) as client:
        assert_offline(client, page)


def assert_offline(client: httpx.Client, page: str) -> None:
    """``page`` and every asset it references come from ``client``'s server (also used for the Ray router)."""
    response = client.get(page)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    html = response.text
    assert URL.findall(html) == [], f"{page} names another origin"
    found = Assets()
    found.feed(html)
    scripts = [u for u in found.urls if u.endswith(".js")]
    local = [u for u in found.urls if not u.startswith("data:")]
    assert scripts and all(u.startswith("/") and not u.startswith("//") for u in local), found.urls
    if page == "/docs":  # Swagger UI's init script: the spec from this server, no online validator
        init = "".join(found.inline)
        assert "url: '/openapi.json'" in init and '"validatorUrl": null' in init
    for url in found.urls:
        if url.startswith("data:"):
            continue
        asset = client.get(url)
        assert asset.status_code == 200, url
        if url.endswith(".css"):
            external = [u for u in CSS_URL.findall(asset.text) if u.startswith(("http:", "https:", "//"))]
            assert external == [], url
        elif url.endswith(".js") and url.startswith("/playground/"):
            assert URL.findall(asset.text) == [], url
        elif url.endswith(".js"):  # vendor bundles carry URLs in licences and schemas: none as a source
            assert SOURCE_URL.findall(asset.text) == [], url


def test_pages_are_not_in_the_api_schema(base):
    paths = httpx.get(f"{base}/openapi.json", timeout=60).json()["paths"]
    assert {"/predict", "/tasks", "/tasks/{task}/neighbours", "/generate"} <= set(paths)
    assert not {"/", "/docs", "/redoc"} & set(paths)


def test_the_wheel_ships_the_playground(tmp_path):
    """An installed package has the page: the wheel carries serve/playground/ (pyproject's package-data)."""
    source = tmp_path / "source"  # a copy: an in-tree build would leave build/ and egg-info in the checkout
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(tmp_path / "dist"), str(source)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    (wheel,) = (tmp_path / "dist").glob("ptune-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {f"ptune/serve/playground/{p.name}" for p in (ROOT / "src/ptune/serve/playground").iterdir()}
    assert shipped == {"ptune/serve/playground/index.html", "ptune/serve/playground/app.js",
                       "ptune/serve/playground/style.css"}
    assert shipped <= names
