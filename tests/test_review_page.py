"""`mtdistill review`: the page's figures and order, and the page itself in a real headless Chromium
(offline, from disk): frame count, sorting, overlay toggle, no console errors, a screenshot."""
from __future__ import annotations

import json
import os
import re
import shutil

import numpy as np
import pytest
from conftest import run_cli
from review_fixtures import make_review_store

from pipeline.review.page import HEADLESS_CHROMIUM, write_review
from pipeline.review.stats import frame_stats, order

CHROMIUM = os.environ.get("MTDISTILL_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture
def pstore(tmp_path):
    return make_review_store(tmp_path / "r.ice")


def page_data(path) -> dict:
    text = path.read_text(encoding="utf-8")
    return json.loads(re.search(r'<script type="application/json" id="data">(.*?)</script>', text, re.DOTALL).group(1))


def test_stats_match_the_arrays(pstore):
    st = frame_stats(pstore, "p")
    g, real = pstore.pseudo("p"), pstore.root["real/segm"][:]
    segm, conf = g["segm"][:], g["conf"][:]
    assert list(st.index) == list(range(20))
    np.testing.assert_allclose(st.mean_conf, conf.mean((1, 2)) / 255, rtol=1e-5)
    has = pstore.root["real/has_segm"][:]
    want = [(segm[i] != real[i]).mean() if has[i] else np.nan for i in range(20)]
    np.testing.assert_allclose(st.disagreement, want, rtol=1e-5)
    assert np.allclose(st.shares.sum(1), 1) and st.shares[3, 2] == pytest.approx((segm[3] == 2).mean())
    dis = order(st, "disagreement")
    assert set(dis[:10]) == set(np.flatnonzero(has))                 # frames with real labels first
    assert list(st.disagreement[dis[:10]]) == sorted(st.disagreement[dis[:10]], reverse=True)


def test_cli_page_limit_and_bad_values(pstore, tmp_path):
    r = run_cli("review", pstore.path, "--pseudo", "p", "--out", tmp_path / "rev", "--sort", "class:c2",
                "--limit", "5")
    assert "index.html" in r.output
    d = page_data(tmp_path / "rev" / "index.html")
    st = frame_stats(pstore, "p")
    assert [f["i"] for f in d["frames"]] == list(st.index[order(st, "class", 2)[:5]])
    for f in d["frames"]:                                   # the page names only thumbnails that exist
        assert all((tmp_path / "rev" / "thumbs" / f"{f['i']}_{k}.webp").is_file() for k in f["k"])
        assert ("real" in f["k"]) == (f["i"] % 2 == 0) and ("real_depth" in f["k"]) == (f["i"] % 3 == 0)
    assert (tmp_path / "rev" / "reliability.png").is_file()
    for args, msg in ((["--sort", "size"], "--sort 'size'"), (["--sort", "class:nope"], "no class 'nope'"),
                      (["--pseudo", "q"], "no pseudo-label set 'q'")):
        r = run_cli("review", pstore.path, "--pseudo", "p", "--out", tmp_path / "bad", *args, ok=False)
        assert r.output.startswith("error: ") and msg in r.output and "Traceback" not in r.output


def browser():
    """A launched headless Chromium (playwright driving the OS package), or pytest.skip with the reason."""
    if not shutil.which(CHROMIUM) and not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium; .ci/run installs it)")
    pw_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    pw = pw_api.sync_playwright().start()
    return pw, pw.chromium.launch(executable_path=CHROMIUM, args=list(HEADLESS_CHROMIUM))


def test_page_in_headless_chromium(pstore, tmp_path):
    page_path = write_review(pstore, "p", tmp_path / "rev", sort="disagreement")
    st = frame_stats(pstore, "p")
    pw, b = browser()
    try:
        ctx = b.new_context(viewport={"width": 1400, "height": 900})
        outside = []                                         # any request that is not a file on disk
        ctx.route(re.compile(r"^(?!file:).*"), lambda route: (outside.append(route.request.url), route.abort()))
        page = ctx.new_page()
        errors = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(page_path.resolve().as_uri())
        assert page.inner_text("#count") == "20 frames"
        rows = lambda: [int(v) for v in page.eval_on_selector_all(".card", "cs => cs.map(c => c.dataset.index)")]
        assert rows() == list(st.index[order(st, "disagreement")])
        page.select_option("#sort", "confidence")
        assert rows() == list(st.index[order(st, "confidence")])
        first = ".card:first-child .stack img.ov"
        assert page.is_hidden(first)
        page.keyboard.press("o")                                     # overlay: pseudo segmentation
        page.wait_for_function(f"document.querySelector('{first}').naturalWidth > 0")
        assert page.is_visible(first) and page.get_attribute(first, "src").endswith("_pseudo.webp")
        page.click(".card:first-child .stack")                       # next overlay: real segmentation
        assert page.get_attribute(first, "src").endswith("_real.webp") == (rows()[0] % 2 == 0)
        page.wait_for_load_state("networkidle")
        shot = page.screenshot(path=str(tmp_path / "review.png"), full_page=False)
        assert len(shot) > 10_000
        assert not errors, errors
        assert not outside, outside
    finally:
        b.close()
        pw.stop()


def test_serve_on_localhost(pstore, tmp_path):
    import threading
    import urllib.request

    from pipeline.cli.review import page_server

    page = write_review(pstore, "p", tmp_path / "rev")
    with page_server(page.parent, 0) as httpd:
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{httpd.server_address[1]}/"
        try:
            with urllib.request.urlopen(url + "index.html", timeout=10) as r:
                assert r.status == 200 and b'id="data"' in r.read()
            with urllib.request.urlopen(url + "thumbs/0_rgb.webp", timeout=10) as r:
                assert r.read(4) == b"RIFF"
            r = run_cli("review", pstore.path, "--pseudo", "p", "--out", tmp_path / "rev2", "--serve",
                        "--port", httpd.server_address[1], ok=False)          # that port is taken
            assert "error: --port" in r.output
        finally:
            httpd.shutdown()


def test_pictures_only_for_what_a_frame_has(pstore):
    from pipeline.review.thumbs import frame_pictures

    rgb, segm = np.zeros((4, 6, 3), np.uint8), np.full((4, 6), 255, np.uint8)
    segm[0] = 1
    depth, conf = np.where(segm != 255, 2.0, 0).astype(np.float32), np.full((4, 6), 200, np.uint8)
    pics = frame_pictures(pstore.classes, rgb, segm, False, segm, conf, depth, None, conf)
    assert sorted(pics) == ["conf", "depth", "depth_conf", "pseudo", "rgb"]
    assert (pics["conf"][1:] == 0).all() and (pics["conf"][0] != 0).any()      # black where no label
    assert (pics["depth_conf"][1:] == 0).all() and tuple(pics["pseudo"][0, 0]) == tuple(pstore.classes[1]["color"])
    pics = frame_pictures(pstore.classes, rgb, segm, True, segm, conf, np.zeros_like(depth), depth, None)
    assert sorted(pics) == ["conf", "pseudo", "real", "real_depth", "rgb"]
