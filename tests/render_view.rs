//! The 3D view as a user meets it: one snapshot rendered with wgpu on lavapipe, and mouse
//! input driven through egui_kittest (no GPU needed for those).

#[path = "common/snapshot.rs"]
mod snapshot;

use egui::{Modifiers, PointerButton, Pos2, Vec2};
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use sam3d_studio::geometry::{RasMm, ViewPlane};
use sam3d_studio::render::{self, BoundsRas, LabelMesh, MeshViewState, SlicePlane, ViewPreset};
use sam3d_studio::shape::Mesh;

/// Icosphere: `subdivisions` loop subdivisions of an icosahedron, CCW seen from outside.
fn icosphere(subdivisions: u32) -> Mesh {
    let t = (1.0 + 5f32.sqrt()) / 2.0;
    let mut vertices: Vec<[f32; 3]> = [
        [-1.0, t, 0.0],
        [1.0, t, 0.0],
        [-1.0, -t, 0.0],
        [1.0, -t, 0.0],
        [0.0, -1.0, t],
        [0.0, 1.0, t],
        [0.0, -1.0, -t],
        [0.0, 1.0, -t],
        [t, 0.0, -1.0],
        [t, 0.0, 1.0],
        [-t, 0.0, -1.0],
        [-t, 0.0, 1.0],
    ]
    .to_vec();
    let mut triangles: Vec<[u32; 3]> = vec![
        [0, 11, 5],
        [0, 5, 1],
        [0, 1, 7],
        [0, 7, 10],
        [0, 10, 11],
        [1, 5, 9],
        [5, 11, 4],
        [11, 10, 2],
        [10, 7, 6],
        [7, 1, 8],
        [3, 9, 4],
        [3, 4, 2],
        [3, 2, 6],
        [3, 6, 8],
        [3, 8, 9],
        [4, 9, 5],
        [2, 4, 11],
        [6, 2, 10],
        [8, 6, 7],
        [9, 8, 1],
    ];
    let normalise = |v: [f32; 3]| {
        let l = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
        v.map(|x| x / l)
    };
    vertices.iter_mut().for_each(|v| *v = normalise(*v));
    for _ in 0..subdivisions {
        let mut midpoints = std::collections::HashMap::new();
        let mut midpoint = |a: u32, b: u32, vertices: &mut Vec<[f32; 3]>| {
            *midpoints.entry((a.min(b), a.max(b))).or_insert_with(|| {
                let (p, q) = (vertices[a as usize], vertices[b as usize]);
                vertices.push(normalise([0, 1, 2].map(|k| 0.5 * (p[k] + q[k]))));
                (vertices.len() - 1) as u32
            })
        };
        let mut next = Vec::with_capacity(triangles.len() * 4);
        for [a, b, c] in triangles {
            let ab = midpoint(a, b, &mut vertices);
            let bc = midpoint(b, c, &mut vertices);
            let ca = midpoint(c, a, &mut vertices);
            next.extend_from_slice(&[[a, ab, ca], [b, bc, ab], [c, ca, bc], [ab, bc, ca]]);
        }
        triangles = next;
    }
    Mesh { vertices, triangles }
}

/// Moves and scales a unit mesh; `bump` adds a smooth radial ripple (a lumpy "organ").
fn placed(mut mesh: Mesh, centre: [f32; 3], radii: [f32; 3], bump: f32) -> Mesh {
    for v in &mut mesh.vertices {
        let ripple = 1.0 + bump * (3.0 * v[0]).sin() * (2.0 * v[1] + 1.0).cos() * (2.5 * v[2]).sin();
        *v = [0, 1, 2].map(|k| centre[k] + radii[k] * ripple * v[k]);
    }
    mesh
}

fn test_scene() -> Vec<LabelMesh> {
    vec![
        LabelMesh {
            label: 1,
            name: "sphere".into(),
            color: [214, 130, 100, 255],
            mesh: placed(icosphere(4), [-25.0, 0.0, 0.0], [30.0; 3], 0.0),
        },
        LabelMesh {
            label: 2,
            name: "blob".into(),
            color: [90, 165, 235, 255],
            mesh: placed(icosphere(4), [38.0, 5.0, 10.0], [18.0, 14.0, 32.0], 0.12),
        },
    ]
}

#[test]
fn icosphere_is_closed_and_outward() {
    let mesh = icosphere(2);
    assert_eq!(mesh.triangles.len(), 320);
    let mut edges = std::collections::HashMap::new();
    for t in &mesh.triangles {
        for k in 0..3 {
            *edges.entry((t[k], t[(k + 1) % 3])).or_insert(0) += 1;
        }
    }
    // Closed and consistently oriented: every directed edge once, its reverse once.
    assert!(edges.iter().all(|(&(a, b), &n)| n == 1 && edges.get(&(b, a)) == Some(&1)));
    let normals = mesh.vertex_normals();
    for (v, n) in mesh.vertices.iter().zip(&normals) {
        assert!(v[0] * n[0] + v[1] * n[1] + v[2] * n[2] > 0.9);
    }
}

#[test]
fn snapshot_spheres_marker_and_planes() {
    let render_state = snapshot::test_render_state();
    render::init(&render_state);
    assert!(render::is_initialised(&render_state));

    let mut state = MeshViewState::new();
    state.set_meshes(test_scene());
    // The crosshair on the sphere's front-right surface: part of the marker sticks out, the
    // rest shows dimmed through the sphere.
    let crosshair = RasMm::new(-25.0 - 12.0, 26.0, 8.0);
    state.set_crosshair(crosshair);
    let bounds = state.mesh_bounds().expect("meshes have bounds");
    state.set_slice_planes(vec![SlicePlane::through_box(ViewPlane::Axial, crosshair, &bounds)]);
    state.options.show_slice_planes = true;
    state.camera.set_preset(ViewPreset::Anterior);
    state.camera.orbit(-0.35, 0.3);

    let mut harness = Harness::builder()
        .with_size(Vec2::new(360.0, 260.0))
        .with_pixels_per_point(1.0)
        .with_render_cursor(false)
        .renderer(egui_kittest::wgpu::WgpuTestRenderer::from_render_state(render_state.clone()))
        .build_ui_state(
            |ui, state: &mut MeshViewState| {
                render::mesh_view_ui(ui, state);
            },
            state,
        );
    harness.run();
    harness.snapshot_options("render_view_spheres", &snapshot::snapshot_options());
}

fn input_harness() -> Harness<'static, MeshViewState> {
    let mut state = MeshViewState::new();
    state.set_meshes(test_scene());
    // 60 Hz steps so a double-click's two clicks fall within egui's 0.3 s.
    let mut harness = Harness::builder().with_size(Vec2::new(400.0, 300.0)).with_step_dt(1.0 / 60.0).build_ui_state(
        |ui, state: &mut MeshViewState| {
            render::mesh_view_ui(ui, state);
        },
        state,
    );
    harness.run();
    harness
}

#[test]
fn first_frame_fits_the_meshes() {
    let harness = input_harness();
    let cam = harness.state().camera;
    let bounds = harness.state().mesh_bounds().expect("bounds");
    assert_eq!(cam.target_ras, bounds.centre());
    let diag = BoundsRas::radius(&bounds);
    assert!(cam.distance_mm > diag && cam.distance_mm < 6.0 * diag, "{}", cam.distance_mm);
}

/// Presses `button` at `from`, moves to `to` in two steps, releases: one drag, frame by frame.
fn drag(harness: &mut Harness<'_, MeshViewState>, from: Pos2, to: Pos2, button: PointerButton, modifiers: Modifiers) {
    harness.event(egui::Event::ModifiersChanged(modifiers));
    harness.event(egui::Event::PointerMoved(from));
    harness.step();
    harness.event(egui::Event::PointerButton { pos: from, button, pressed: true, modifiers });
    harness.step();
    for p in [from.lerp(to, 0.5), to] {
        harness.event(egui::Event::PointerMoved(p));
        harness.step();
    }
    harness.event(egui::Event::PointerButton { pos: to, button, pressed: false, modifiers });
    harness.event(egui::Event::ModifiersChanged(Modifiers::NONE));
    harness.run();
}

const CENTRE: Pos2 = Pos2::new(200.0, 150.0);

#[test]
fn left_drag_orbits_keeping_distance() {
    let mut harness = input_harness();
    let before = harness.state().camera;
    drag(&mut harness, CENTRE, CENTRE + Vec2::new(60.0, 0.0), PointerButton::Primary, Modifiers::NONE);
    let after = harness.state().camera;
    // Dragging right swings the camera to the scene's left (yaw grows), the whole drag counts.
    let expected = 60.0 * 0.008;
    assert!((after.yaw - before.yaw - expected).abs() < 0.05, "yaw {} → {}", before.yaw, after.yaw);
    assert_eq!(after.pitch, before.pitch);
    assert_eq!(after.distance_mm, before.distance_mm);
    assert_eq!(after.target_ras, before.target_ras);
}

#[test]
fn right_and_shift_drag_pan_and_wheel_zooms() {
    for (button, modifiers) in [
        (PointerButton::Secondary, Modifiers::NONE),
        (PointerButton::Middle, Modifiers::NONE),
        (PointerButton::Primary, Modifiers::SHIFT),
    ] {
        let mut harness = input_harness();
        let before = harness.state().camera;
        drag(&mut harness, CENTRE, CENTRE + Vec2::new(40.0, 30.0), button, modifiers);
        let panned = harness.state().camera;
        assert_ne!(panned.target_ras, before.target_ras, "{button:?} {modifiers:?}");
        assert_eq!((panned.yaw, panned.pitch, panned.distance_mm), (before.yaw, before.pitch, before.distance_mm));
    }

    let mut harness = input_harness();
    let before = harness.state().camera;
    harness.hover_at(CENTRE);
    harness.step();
    harness.event(egui::Event::MouseWheel {
        unit: egui::MouseWheelUnit::Point,
        delta: Vec2::new(0.0, 120.0),
        phase: egui::TouchPhase::Move,
        source: egui::MouseWheelSource::Wheel,
        modifiers: Modifiers::NONE,
    });
    // Wheel scrolling is smoothed over several frames.
    harness.run_steps(30);
    let zoomed = harness.state().camera;
    assert!(zoomed.distance_mm < 0.9 * before.distance_mm, "{} → {}", before.distance_mm, zoomed.distance_mm);
    assert_eq!(zoomed.target_ras, before.target_ras);
}

#[test]
fn preset_buttons_and_double_click_fit() {
    let mut harness = input_harness();
    harness.get_by_label("S").click();
    harness.run();
    let b = harness.state().camera.basis();
    assert!((b.back.z - 1.0).abs() < 1e-9 && (b.up.y - 1.0).abs() < 1e-9, "{b:?}");
    harness.get_by_label("L").click();
    harness.run();
    let b = harness.state().camera.basis();
    assert!((b.back.x + 1.0).abs() < 1e-9 && (b.up.z - 1.0).abs() < 1e-9, "{b:?}");

    harness.state_mut().camera.target_ras = [500.0, 0.0, 0.0];
    let p = Pos2::new(200.0, 200.0);
    harness.hover_at(p);
    // Let the preset button's tooltip close first (it takes the pointer for a few frames).
    harness.run_steps(30);
    for _ in 0..2 {
        for pressed in [true, false] {
            harness.event(egui::Event::PointerButton {
                pos: p,
                button: PointerButton::Primary,
                pressed,
                modifiers: Modifiers::NONE,
            });
        }
    }
    harness.run();
    let bounds = harness.state().mesh_bounds().expect("bounds");
    assert_eq!(harness.state().camera.target_ras, bounds.centre());
}

#[test]
fn empty_view_says_so() {
    let mut harness = Harness::builder().with_size(Vec2::new(300.0, 200.0)).build_ui_state(
        |ui, state: &mut MeshViewState| {
            render::mesh_view_ui(ui, state);
        },
        MeshViewState::new(),
    );
    harness.run();
    harness.get_by_label("No meshes yet");
}

#[test]
fn state_round_trips_through_serde() {
    let mut state = MeshViewState::new();
    state.set_meshes(test_scene());
    state.camera.set_preset(ViewPreset::Left);
    state.options.opacity = 0.5;
    state.set_label_visible(2, false);
    let json = serde_json::to_string(&state).expect("serialise");
    let back: MeshViewState = serde_json::from_str(&json).expect("deserialise");
    assert_eq!(back.camera, state.camera);
    assert_eq!(back.options, state.options);
    assert!(!back.is_label_visible(2) && back.is_label_visible(1));
    // Meshes are run-time data, not persisted.
    assert_eq!(back.triangle_count(), 0);
}

#[test]
fn big_mesh_is_uploaded_once_while_orbiting() {
    // ~330k triangles (icosphere level 7: 327,680). Per frame only uniforms change.
    let render_state = snapshot::test_render_state();
    render::init(&render_state);
    let mut state = MeshViewState::new();
    let mesh = placed(icosphere(7), [0.0; 3], [80.0; 3], 0.05);
    // Packing happens off the UI thread, as the app's worker would do it.
    let t_set = std::time::Instant::now();
    let prepared = std::thread::spawn(move || {
        render::PreparedLabelMeshes::new(vec![LabelMesh {
            label: 1,
            name: "big".into(),
            color: [200, 200, 200, 255],
            mesh,
        }])
    })
    .join()
    .expect("packing thread");
    let set_meshes_ms = t_set.elapsed().as_secs_f64() * 1e3;
    state.set_prepared_meshes(prepared);
    assert!(state.triangle_count() > 200_000);
    let mut harness = Harness::builder()
        .with_size(Vec2::new(200.0, 150.0))
        .renderer(egui_kittest::wgpu::WgpuTestRenderer::from_render_state(render_state.clone()))
        .build_ui_state(
            |ui, state: &mut MeshViewState| {
                render::mesh_view_ui(ui, state);
            },
            state,
        );
    // First frame: pipeline warm-up and the one upload.
    harness.step();
    harness.render().expect("rendered");
    let frames = 5;
    let mut ui_secs = 0.0;
    let mut render_secs = 0.0;
    for _ in 0..frames {
        harness.state_mut().camera.orbit(0.1, 0.02);
        let t0 = std::time::Instant::now();
        harness.step();
        let t1 = std::time::Instant::now();
        harness.render().expect("rendered");
        ui_secs += (t1 - t0).as_secs_f64();
        render_secs += t1.elapsed().as_secs_f64();
    }
    let stats = render::gpu::stats(&render_state).expect("initialised");
    assert_eq!(stats.mesh_uploads, 1, "{stats:?}");
    assert!(stats.frames > frames, "{stats:?}");
    // Every frame above moved the camera: each was drawn.
    assert_eq!(stats.frames_reused, 0, "{stats:?}");
    // A repaint with nothing changed shows the last picture without drawing it again; a moved
    // camera draws again.
    harness.step();
    let still = harness.render().expect("rendered");
    let reused = render::gpu::stats(&render_state).expect("initialised").frames_reused;
    assert!(reused >= 1, "a repaint with nothing changed was drawn again");
    harness.step();
    let again = harness.render().expect("rendered");
    assert!(render::gpu::stats(&render_state).expect("initialised").frames_reused > reused);
    assert_eq!(still.as_raw(), again.as_raw(), "the reused frame differs from the last drawn one");
    harness.state_mut().camera.orbit(0.3, 0.0);
    harness.step();
    let moved = harness.render().expect("rendered");
    let after = render::gpu::stats(&render_state).expect("initialised");
    assert_ne!(moved.as_raw(), again.as_raw(), "the moved camera's frame was not drawn");
    assert!(after.frames > stats.frames + 2, "{after:?}");
    // Held (a job running): a moved crosshair keeps the last picture; the camera still moves
    // it; let go, the crosshair shows.
    harness.state_mut().set_hold(true);
    harness.state_mut().set_crosshair(RasMm::new(1.0, 2.0, 3.0));
    harness.step();
    let held = harness.render().expect("rendered");
    assert_eq!(held.as_raw(), moved.as_raw(), "a held view drew the moved crosshair");
    harness.state_mut().camera.orbit(0.2, 0.0);
    harness.step();
    let turned = harness.render().expect("rendered");
    assert_ne!(turned.as_raw(), held.as_raw(), "a held view did not follow its camera");
    harness.state_mut().set_hold(false);
    harness.step();
    let released = harness.render().expect("rendered");
    harness.state_mut().clear_crosshair();
    harness.step();
    let without = harness.render().expect("rendered");
    assert_ne!(released.as_raw(), without.as_raw(), "the crosshair did not show once the view was let go");
    // Reported, not asserted (software rasteriser on a shared CPU).
    eprintln!(
        "{} triangles: packing {set_meshes_ms:.1} ms once (worker thread), UI pass {:.2} ms/frame, lavapipe render+readback {:.1} ms/frame",
        harness.state().triangle_count(),
        ui_secs * 1e3 / frames as f64,
        render_secs * 1e3 / frames as f64
    );
}

/// Renders the test scene with egui's render target in `format`.
fn render_scene(format: wgpu::TextureFormat) -> (u32, u32, Vec<u8>) {
    let base = snapshot::test_render_state();
    let renderer = egui_wgpu::Renderer::new(&base.device, format, egui_wgpu::RendererOptions::PREDICTABLE);
    let render_state = egui_wgpu::RenderState {
        target_format: format,
        renderer: std::sync::Arc::new(egui::mutex::RwLock::new(renderer)),
        ..base
    };
    render::init(&render_state);
    let mut state = MeshViewState::new();
    state.set_meshes(test_scene());
    state.set_crosshair(RasMm::new(-37.0, 26.0, 8.0));
    state.options.show_help = false;
    let mut harness = Harness::builder()
        .with_size(Vec2::new(160.0, 120.0))
        .with_render_cursor(false)
        .renderer(egui_kittest::wgpu::WgpuTestRenderer::from_render_state(render_state))
        .build_ui_state(
            |ui, state: &mut MeshViewState| {
                render::mesh_view_ui(ui, state);
            },
            state,
        );
    harness.run();
    let image = harness.render().expect("rendered");
    let (w, h) = image.dimensions();
    (w, h, image.into_raw())
}

#[test]
fn srgb_and_plain_targets_look_the_same() {
    // egui's usual target is a plain 8-bit format (the composite shader encodes sRGB itself);
    // some surfaces only offer sRGB formats (the hardware encodes). Same picture either way.
    use wgpu::TextureFormat;
    let (w, h, plain) = render_scene(TextureFormat::Rgba8Unorm);
    let (w2, h2, srgb) = render_scene(TextureFormat::Rgba8UnormSrgb);
    assert_eq!((w, h), (w2, h2));
    let px = |img: &[u8], x: u32, y: u32| {
        let i = 4 * (y * w + x) as usize;
        [img[i], img[i + 1], img[i + 2]]
    };
    // Compare below the button row, where only the 3D image is.
    let mut worst = 0u8;
    let mut sum = 0u64;
    let mut n = 0u64;
    for y in 30..h - 10 {
        for x in 10..w - 10 {
            let (a, b) = (px(&plain, x, y), px(&srgb, x, y));
            for c in 0..3 {
                let d = a[c].abs_diff(b[c]);
                worst = worst.max(d);
                sum += u64::from(d);
                n += 1;
            }
        }
    }
    let mean = sum as f64 / n as f64;
    assert!(worst <= 3 && mean < 0.5, "worst {worst}, mean {mean:.3}");
    // And the scene is really there: the image centre is not background.
    assert_ne!(px(&plain, w / 2, h / 2), px(&plain, 12, h - 12));
}
