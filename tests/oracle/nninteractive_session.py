"""Drives `sam3d-studio-engine serve-http` with the real nnInteractive client
(`nninteractive-client` 2.6, what 3D Slicer's nnInteractive extension uses), for
crates/sam3d-engine/tests/http_nninteractive.rs. Never part of the product.

    python3 nninteractive_session.py MODE URL WORKDIR [KEY]

MODE:
  flow      claim → capabilities → set_image (WORKDIR/image.f32 + image.json) → target buffer →
            point → negative point → undo → reset → 2D box → initial segmentation + point →
            refused interactions → close. Writes each buffer to WORKDIR/<step>.u8 and the facts
            to WORKDIR/flow.json.
  expiry    claim, wait past the idle timeout, then a request: SessionExpiredError (410).
  capacity  claim, then a second claim: ServerAtCapacityError (503).
  auth      claim with no key and with a wrong key: 401 each.
  hostile   malformed and oversized bodies, a client gone mid-upload: 4xx each, server alive.
The script exits non-zero on the first expectation that does not hold.
"""

import json
import socket
import sys
import time

import httpx
import numpy as np
from nnInteractive.inference.remote import (
    ServerAtCapacityError,
    SessionExpiredError,
    nnInteractiveRemoteInferenceSession,
)
from nnInteractive.inference.remote.serialization import pack_array


def expect(cond, what):
    if not cond:
        raise SystemExit(f"FAILED: {what}")


def status_of(call):
    try:
        call()
    except httpx.HTTPStatusError as e:
        return e.response.status_code, e.response.json().get("detail", "")
    return 200, ""


def load_image(work):
    meta = json.load(open(f"{work}/image.json"))
    img = np.fromfile(f"{work}/image.f32", dtype="<f4").reshape(meta["shape"])
    return img, meta


def flow(url, work, key):
    img, meta = load_image(work)
    s = nnInteractiveRemoteInferenceSession(url, api_key=key)
    facts = {"caps": {
        "supported_interactions": s.supported_interactions,
        "supports_undo": s.supports_undo,
        "supports_initial_label": s.supports_initial_label,
    }}
    t = time.time()
    s.set_image(img[None], {"affine": meta["affine"]})
    facts["set_image_secs"] = time.time() - t
    expect(tuple(s.original_image_shape) == (1, *img.shape), f"original_image_shape {s.original_image_shape}")
    tb = np.zeros(img.shape, np.uint8)
    s.set_target_buffer(tb)

    def save(step):
        tb.tofile(f"{work}/{step}.u8")
        facts[step] = {"voxels": int(tb.sum()), "bbox": s._last_paste_bbox}

    k, j, i = meta["click_kji"]
    t = time.time()
    s.add_point_interaction((k, j, i), include_interaction=True)
    facts["point_secs"] = time.time() - t
    save("point")
    expect(tb[k, j, i] == 1, "the clicked voxel is in the result")
    nk, nj, ni = meta["negative_kji"]
    s.add_point_interaction((nk, nj, ni), include_interaction=False)
    save("negative")
    expect(s.undo() is True, "undo ran")
    save("undone")
    expect(s.undo() is True, "second undo ran")
    expect(int(tb.sum()) == 0, "two undos leave the buffer empty")
    expect(s.undo() is False, "nothing more to undo")
    s.add_point_interaction((k, j, i), include_interaction=True)
    s.reset_interactions()
    expect(int(tb.sum()) == 0, "reset empties the buffer")
    (k0, k1), (j0, j1), (i0, i1) = meta["box_kji"]
    s.add_bbox_interaction([[k, k + 1], [j0, j1], [i0, i1]], include_interaction=True)
    save("box")
    s.reset_interactions()
    init = np.fromfile(f"{work}/point.u8", dtype=np.uint8).reshape(img.shape)
    s.add_initial_seg_interaction(init)
    expect(np.array_equal(tb, init), "the client mirrors the initial segmentation")
    pk, pj, pi = meta["extra_kji"]
    s.add_point_interaction((pk, pj, pi), include_interaction=True)
    save("initial_plus_point")
    # A small structure with the client's auto-zoom as the capabilities set it, then off.
    facts["caps"]["do_autozoom"] = s.do_autozoom
    sk, sj, si = meta["small_kji"]
    s.reset_interactions()
    s.add_point_interaction((sk, sj, si), include_interaction=True)
    save("small_zoom")
    s.set_do_autozoom(False)
    s.reset_interactions()
    s.add_point_interaction((sk, sj, si), include_interaction=True)
    save("small_one_scale")
    refused = {}
    refused["scribble"] = status_of(lambda: s.add_scribble_interaction(np.zeros(img.shape, np.uint8), include_interaction=True))
    refused["negative_box"] = status_of(lambda: s.add_bbox_interaction([[k, k + 1], [j0, j1], [i0, i1]], include_interaction=False))
    refused["outside"] = status_of(lambda: s.add_point_interaction((img.shape[0] + 5, 0, 0), include_interaction=True))
    refused["bad_buffer"] = status_of(lambda: s.set_target_buffer(np.zeros((3, 3, 3), np.uint8)))
    facts["refused"] = refused
    status = s.lease_status()
    facts["lease_status"] = status
    s.close()
    json.dump(facts, open(f"{work}/flow.json", "w"), indent=1)


def expiry(url, key):
    s = nnInteractiveRemoteInferenceSession(url, api_key=key)
    s._stop_heartbeat.set()  # a client whose heartbeat stopped (crashed)
    time.sleep(3.0)
    try:
        s.set_target_buffer(np.zeros((4, 4, 4), np.uint8))
    except SessionExpiredError as e:
        print(f"expired: {e}")
        return
    raise SystemExit("FAILED: no SessionExpiredError after the timeout")


def capacity(url, key):
    a = nnInteractiveRemoteInferenceSession(url, api_key=key)
    try:
        nnInteractiveRemoteInferenceSession(url, api_key=key)
    except ServerAtCapacityError as e:
        print(f"at capacity: {e}")
        a.close()
        # The slot is free again.
        nnInteractiveRemoteInferenceSession(url, api_key=key).close()
        return
    raise SystemExit("FAILED: a second claim was accepted at max-sessions 1")


def auth(url, key):
    for k in (None, key + "x"):
        try:
            nnInteractiveRemoteInferenceSession(url, api_key=k)
        except httpx.HTTPStatusError as e:
            expect(e.response.status_code == 401, f"key {k!r}: status {e.response.status_code}")
            continue
        raise SystemExit(f"FAILED: key {k!r} was accepted")
    print("401 without the right key")


def hostile(url, key):
    h = {"Authorization": f"Bearer {key}"} if key else {}
    c = httpx.Client(base_url=url, headers=h, timeout=30)
    lease = c.post("/claim").json()["lease_token"]
    c.headers["X-Lease-Token"] = lease
    codes = {}
    codes["garbage_image"] = c.post("/set_image", content=b"not an array" * 10).status_code
    codes["bad_meta"] = c.post("/set_image", content=b"", headers={"X-Meta": "{not json"}).status_code
    codes["truncated_image"] = c.post("/set_image", content=pack_array(np.zeros((1, 8, 8, 8), np.float32))[:-5]).status_code
    codes["huge_shape"] = c.post("/set_image", content=b"NNIA\x01\x01\x04\x07float32" + (np.array([1, 1 << 20, 1 << 20, 1 << 20], "<i8")).tobytes() + b"\x00\x00\x00\x00").status_code
    codes["oversized_body"] = c.post("/set_image", content=b"\x00" * (3 << 20)).status_code
    codes["bad_json"] = c.post("/add_point_interaction", content=b"{\"coordinates\": [1,2]").status_code
    codes["wrong_types"] = c.post("/add_point_interaction", json={"coordinates": "here", "include_interaction": 1}).status_code
    codes["point_before_image"] = c.post("/add_point_interaction", json={"coordinates": [1, 2, 3], "include_interaction": True}).status_code
    codes["buffer_dtype"] = c.post("/set_target_buffer", json={"shape": [2, 2, 2], "dtype": "float32"}).status_code
    codes["buffer_huge"] = c.post("/set_target_buffer", json={"shape": [1 << 20, 1 << 20, 1 << 20], "dtype": "uint8"}).status_code
    codes["no_lease"] = httpx.post(url + "/heartbeat", headers=h).status_code
    codes["unknown_path"] = c.get("/nothing_here").status_code
    # A client that goes away in the middle of an upload.
    host, port = url.split("//")[1].split(":")
    sock = socket.create_connection((host, int(port)))
    head = f"POST /set_image HTTP/1.1\r\nHost: {host}\r\nContent-Length: {10 << 20}\r\nX-Lease-Token: {lease}\r\n"
    if key:
        head += f"Authorization: Bearer {key}\r\n"
    sock.sendall((head + "\r\n").encode() + b"\x00" * (1 << 20))
    sock.close()
    time.sleep(0.5)
    codes["healthz_after"] = c.get("/healthz").status_code
    codes["heartbeat_after"] = c.post("/heartbeat").status_code
    print(json.dumps(codes))


def main():
    mode, url, work = sys.argv[1:4]
    key = sys.argv[4] if len(sys.argv) > 4 else None
    {"flow": lambda: flow(url, work, key), "expiry": lambda: expiry(url, key), "capacity": lambda: capacity(url, key),
     "auth": lambda: auth(url, key), "hostile": lambda: hostile(url, key)}[mode]()


if __name__ == "__main__":
    main()
