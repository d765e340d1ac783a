//! `sam3d-studio-engine serve`: the [`Engine`] worker behind the JSON-lines protocol of
//! [`crate::protocol`] on stdin/stdout, so the viewer (which never links libtorch) can drive the
//! model in this process. A line it cannot read is answered with `failed{job:null}` and
//! skipped; a volume is read on the worker, in order with the clicks, so this loop stays free
//! to pass cancels on at once.

use super::{Command, Engine, EngineOptions, Event};
use crate::protocol::{CropFile, MAX_LINE_BYTES, PROTOCOL_VERSION, Reply, Request, from_line, infer_prompt, to_line};
use crate::shape::{MeshObject, MeshSpace};
use std::io::{BufRead, Write};

/// Writes a result's files into `dir` (`job-N.mask`, `job-N.ply`) and builds its reply. On an
/// error nothing is left behind.
fn result_reply(dir: &std::path::Path, job: u64, r: &super::InferResult) -> Result<Reply, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: could not make the results folder: {e}", dir.display()))?;
    let crop = match &r.component {
        Some(c) => {
            let path = dir.join(format!("job-{job}.mask"));
            std::fs::write(&path, c.mask_bytes()).map_err(|e| format!("{}: could not write the result: {e}", path.display()))?;
            let d = c.mask.dim();
            Some(CropFile { path, origin_kji: c.origin_kji, shape_kji: [d.0, d.1, d.2] })
        }
        None => None,
    };
    let mesh_path = match &r.mesh {
        Some(m) => {
            let path = dir.join(format!("job-{job}.ply"));
            let bytes = crate::shape::export::ply_bytes(&[MeshObject { label: 1, name: "click", mesh: m }], MeshSpace::Ras);
            if let Err(e) = std::fs::write(&path, bytes) {
                if let Some(c) = &crop {
                    let _ = std::fs::remove_file(&c.path);
                }
                return Err(format!("{}: could not write the result's mesh: {e}", path.display()));
            }
            Some(path)
        }
        None => None,
    };
    Ok(Reply::Result { job, crop, mesh_path, timings: r.timings.clone(), voxel_count: r.voxel_count, ml: r.volume_ml, adapter: r.adapter.clone() })
}

fn write_line(out: &mut impl Write, r: &Reply) -> std::io::Result<()> {
    writeln!(out, "{}", to_line(r))?;
    out.flush()
}

/// Reads request lines from `input` until it ends, handing each on (or why it could not be
/// read). A line longer than [`MAX_LINE_BYTES`] is skipped to its end without holding it.
fn read_requests(input: impl BufRead, tx: crossbeam_channel::Sender<Result<Request, String>>) {
    let mut input = input.take(0);
    loop {
        input.set_limit(MAX_LINE_BYTES as u64 + 1);
        let mut buf = Vec::new();
        match input.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let r = if buf.len() > MAX_LINE_BYTES && buf.last() != Some(&b'\n') {
            // Drop the rest of this line.
            loop {
                input.set_limit(1 << 16);
                let mut rest = Vec::new();
                match input.read_until(b'\n', &mut rest) {
                    Ok(0) | Err(_) => return,
                    Ok(_) if rest.last() == Some(&b'\n') => break,
                    Ok(_) => {}
                }
            }
            Err(format!("a request line longer than {MAX_LINE_BYTES} bytes"))
        } else {
            match std::str::from_utf8(&buf) {
                Ok(line) if line.trim().is_empty() => continue,
                Ok(line) => from_line::<Request>(line.trim_end()),
                Err(e) => Err(format!("a request line that is not UTF-8: {e}")),
            }
        };
        if tx.send(r).is_err() {
            return;
        }
    }
}

/// Runs the protocol on this process's stdin/stdout until stdin ends. Returns an error only
/// when stdout cannot be written (the client has gone).
pub fn serve(opts: EngineOptions) -> std::io::Result<()> {
    let engine = Engine::spawn(opts, Box::new(|| {}))?;
    // Made at the first result (a process killed before that leaves nothing behind).
    let out_dir = std::env::temp_dir().join(format!("sam3d-engine-{}", std::process::id()));
    let (req_tx, req_rx) = crossbeam_channel::bounded::<Result<Request, String>>(32);
    std::thread::Builder::new().name("sam3d-serve-stdin".into()).spawn(move || read_requests(std::io::stdin().lock(), req_tx))?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut volume_id = 0u64;
    let result = loop {
        crossbeam_channel::select! {
            recv(req_rx) -> r => {
                let req = match r {
                    Err(_) | Ok(Ok(Request::Shutdown)) => break Ok(()),
                    Ok(Err(why)) => {
                        write_line(&mut out, &Reply::Failed { job: None, message: format!("bad request: {why}") })?;
                        continue;
                    }
                    Ok(Ok(req)) => req,
                };
                let cmd = match req {
                    Request::LoadWeights { path } => Command::LoadWeights(path),
                    Request::LoadAdapter { path } => Command::LoadAdapter(path),
                    Request::SetVolume { path } => {
                        volume_id += 1;
                        Command::OpenVolume { volume_id, path }
                    }
                    Request::Infer { job, click, plane, options, negative, bbox, object } => match infer_prompt(click, negative, bbox) {
                        Ok(prompt) => Command::Infer { job, prompt, plane, mask2d: None, options, object },
                        Err(message) => {
                            write_line(&mut out, &Reply::Failed { job: Some(job), message })?;
                            continue;
                        }
                    },
                    Request::Cancel { job } => Command::Cancel { job },
                    Request::Shutdown => break Ok(()),
                };
                if let Err(e) = engine.send(cmd) {
                    write_line(&mut out, &Reply::Failed { job: None, message: e.to_string() })?;
                }
            }
            recv(engine.events()) -> ev => {
                let Ok(ev) = ev else { break Ok(()) };
                let reply = match ev {
                    Event::Ready { device } => Reply::Ready { device, protocol: PROTOCOL_VERSION },
                    Event::ModelLoaded(info) => Reply::ModelLoaded { info },
                    Event::AdapterLoaded(info) => Reply::AdapterLoaded { info },
                    Event::VolumeReady { secs, .. } => Reply::VolumeReady { secs },
                    Event::Progress { job, stage, fraction } => Reply::Progress { job, stage, fraction },
                    Event::MaskPreview { .. } => continue,
                    Event::Result { job, result } => result_reply(&out_dir, job, &result).unwrap_or_else(|message| Reply::Failed { job: Some(job), message }),
                    Event::Cancelled { job } => Reply::Cancelled { job },
                    Event::Failed { job, message } => Reply::Failed { job, message },
                };
                write_line(&mut out, &reply)?;
            }
        }
    };
    engine.shutdown();
    let _ = std::fs::remove_dir_all(&out_dir);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreadable_and_oversized_request_lines_are_reported_and_reading_goes_on() {
        let mut input = Vec::new();
        input.extend_from_slice(b"{\"cmd\":\"cancel\",\"job\":1}\n");
        input.extend_from_slice(b"not json\n");
        input.extend(std::iter::repeat_n(b'x', MAX_LINE_BYTES + 10));
        input.extend_from_slice(b"\n\xff\xfe\n\n{\"cmd\":\"shutdown\"}\n");
        let (tx, rx) = crossbeam_channel::unbounded();
        read_requests(std::io::Cursor::new(input), tx);
        let got: Vec<Result<Request, String>> = rx.try_iter().collect();
        assert_eq!(got.len(), 5, "{got:?}");
        assert_eq!(got[0], Ok(Request::Cancel { job: 1 }));
        assert!(got[1].as_ref().is_err_and(|e| e.contains("not json")), "{:?}", got[1]);
        assert!(got[2].as_ref().is_err_and(|e| e.contains("longer than")), "{:?}", got[2]);
        assert!(got[3].as_ref().is_err_and(|e| e.contains("UTF-8")), "{:?}", got[3]);
        assert_eq!(got[4], Ok(Request::Shutdown));
    }
}
