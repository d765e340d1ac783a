"""Load test of `sam3d-studio-engine serve-http` with the real nnInteractive client
(packaging/linux/load_test_http.sh runs it; loopback only, bounded in clicks and time).

    python3 nninteractive_load.py URL CLIENTS CLICKS IMAGE.nii LABELS.nii SERVER_PID

Each client claims a session (retrying every 2 s while the server says it is at capacity, for
at most 15 minutes), uploads its own copy of the CT shifted by 4·c voxels along i, and makes
CLICKS one-point objects at organ centres (shifted the same way). Prints one JSON line: per
client the claim wait, upload time, click latencies and errors; p50/p95 over all clicks; the
server's memory before and at its peak; and whether every client's results are its own image's
(each result's centre sits 4·c voxels from client 0's, voxel counts within 2 %).
"""

import json
import sys
import threading
import time

import numpy as np
from nnInteractive.inference.remote import ServerAtCapacityError, nnInteractiveRemoteInferenceSession

SHIFT = 4


def read_nifti(path):
    """An uncompressed NIfTI-1 as the [k, j, i] array and the voxel→RAS affine (sform)."""
    raw = open(path, "rb").read()
    dim = np.frombuffer(raw, "<i2", 8, 40)
    dtype = {2: "u1", 4: "<i2", 8: "<i4", 16: "<f4", 64: "<f8", 512: "<u2"}[int(np.frombuffer(raw, "<i2", 1, 70)[0])]
    off = int(np.frombuffer(raw, "<f4", 1, 108)[0])
    n = int(dim[1]) * int(dim[2]) * int(dim[3])
    data = np.frombuffer(raw, dtype, n, off).reshape(int(dim[3]), int(dim[2]), int(dim[1]))
    aff = np.eye(4)
    aff[:3] = np.frombuffer(raw, "<f4", 12, 280).reshape(3, 4)
    return data, aff


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def main():
    url, clients, clicks, image, labels, pid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5], int(sys.argv[6])
    img, aff = read_nifti(image)
    lab, _ = read_nifti(labels)
    img = img.astype(np.float32)
    # Click points: the label voxel nearest each organ's centroid (liver, spleen, kidneys, stomach).
    points = []
    for label in (5, 1, 2, 3, 6):
        idx = np.argwhere(lab == label)
        if len(idx) == 0:
            continue
        c = idx.mean(axis=0)
        points.append(tuple(int(v) for v in idx[np.argmin(((idx - c) ** 2).sum(axis=1))]))
    base_rss = rss_kib(pid)
    peak = [base_rss]
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            peak[0] = max(peak[0], rss_kib(pid))
            time.sleep(0.2)

    results = [None] * clients

    def run(c):
        r = {"client": c, "errors": [], "latencies": [], "results": []}
        t0 = time.time()
        s = None
        while s is None and time.time() - t0 < 900:
            try:
                s = nnInteractiveRemoteInferenceSession(url)
            except ServerAtCapacityError:
                r.setdefault("refused_at_capacity", 0)
                r["refused_at_capacity"] += 1
                time.sleep(2.0)
        if s is None:
            r["errors"].append("no slot within 15 minutes")
            results[c] = r
            return
        r["claim_wait_s"] = time.time() - t0
        try:
            mine = np.zeros_like(img)
            mine[:, :, SHIFT * c:] = img[:, :, : img.shape[2] - SHIFT * c]
            t = time.time()
            s.set_image(mine[None], {"affine": aff.tolist()})
            tb = np.zeros(mine.shape, np.uint8)
            s.set_target_buffer(tb)
            r["upload_s"] = time.time() - t
            for n in range(clicks):
                k, j, i = points[n % len(points)]
                s.reset_interactions()
                t = time.time()
                try:
                    s.add_point_interaction((k, j, i + SHIFT * c), include_interaction=True)
                except Exception as e:  # noqa: BLE001 - every failure is counted
                    r["errors"].append(repr(e))
                    continue
                r["latencies"].append(time.time() - t)
                nz = np.argwhere(tb)
                r["results"].append([int(tb.sum()), float(nz[:, 2].mean()) if len(nz) else -1.0])
        finally:
            s.close()
        results[c] = r

    w = threading.Thread(target=watch, daemon=True)
    w.start()
    threads = [threading.Thread(target=run, args=(c,)) for c in range(clients)]
    t0 = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    lat = sorted(x for r in results for x in r["latencies"])
    own = True
    for r in results[1:]:
        for a, b in zip(results[0]["results"], r["results"]):
            if a[0] == 0 or abs(b[0] - a[0]) > 0.02 * a[0] or abs((b[1] - a[1]) - SHIFT * r["client"]) > 1.0:
                own = False
    out = {
        "clients": clients,
        "clicks_each": clicks,
        "image_shape": list(img.shape),
        "wall_s": time.time() - t0,
        "p50_s": float(np.percentile(lat, 50)) if lat else None,
        "p95_s": float(np.percentile(lat, 95)) if lat else None,
        "clicks_done": len(lat),
        "errors": sum(len(r["errors"]) for r in results),
        "refused_at_capacity": sum(r.get("refused_at_capacity", 0) for r in results),
        "server_rss_mib": {"before": base_rss / 1024, "peak": peak[0] / 1024},
        "each_sees_its_own_image": own,
        "per_client": [{k: v for k, v in r.items() if k != "results"} | {"voxels": [x[0] for x in r["results"]]} for r in results],
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
