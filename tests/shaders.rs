//! Every WGSL shader in `shaders/` parses and validates with naga (the same front end and
//! validator wgpu runs), so a broken shader fails here on a machine with no GPU. Also checks
//! the entry points the Rust code names and the uniform layout it writes.

use std::path::{Path, PathBuf};

use naga::valid::{Capabilities, ValidationFlags, Validator};

fn shader_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders")
}

/// Parses and validates one WGSL source; the error names the file and the problem.
fn validate_wgsl(name: &str, source: &str) -> Result<naga::Module, String> {
    let module = naga::front::wgsl::parse_str(source).map_err(|e| e.emit_to_string_with_path(source, name))?;
    Validator::new(ValidationFlags::all(), Capabilities::default())
        .validate(&module)
        .map_err(|e| e.emit_to_string_with_path(source, name))?;
    Ok(module)
}

fn wgsl_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(shader_dir())
        .expect("shaders/ exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "wgsl"))
        .collect();
    files.sort();
    files
}

fn load(name: &str) -> naga::Module {
    let path = shader_dir().join(name);
    let source = std::fs::read_to_string(&path).expect("shader readable");
    validate_wgsl(name, &source).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn every_shader_validates() {
    let files = wgsl_files();
    assert!(files.len() >= 2, "expected the mesh and composite shaders, found {files:?}");
    let mut failures = Vec::new();
    for path in &files {
        let source = std::fs::read_to_string(path).expect("shader readable");
        if let Err(e) = validate_wgsl(&path.display().to_string(), &source) {
            failures.push(e);
        }
    }
    assert!(failures.is_empty(), "invalid shaders:\n{}", failures.join("\n"));
}

#[test]
fn broken_shaders_are_caught() {
    let good = std::fs::read_to_string(shader_dir().join("mesh.wgsl")).expect("readable");
    assert!(validate_wgsl("mesh.wgsl", &good).is_ok());
    // A syntax error (parse stage).
    let syntax = good.replacen("return out;", "return out", 1);
    let err = validate_wgsl("syntax.wgsl", &syntax).expect_err("missing semicolon must fail");
    assert!(err.contains("syntax.wgsl"), "{err}");
    // A type error (parse/lowering stage): vec3 returned where vec4 is declared.
    let types = good.replacen("return vec4<f32>(rgb * a, a);", "return rgb * a;", 1);
    assert_ne!(types, good);
    assert!(validate_wgsl("types.wgsl", &types).is_err());
    // A validation-only error: a uniform of a runtime-sized array is not allowed.
    let uniform_array = "@group(0) @binding(0) var<uniform> bad: array<f32>;\n\
        @fragment fn fs() -> @location(0) vec4<f32> { return vec4<f32>(bad[0]); }";
    assert!(validate_wgsl("uniform_array.wgsl", uniform_array).is_err());
}

fn entry_points(module: &naga::Module) -> Vec<(naga::ShaderStage, String)> {
    module.entry_points.iter().map(|e| (e.stage, e.name.clone())).collect()
}

#[test]
fn entry_points_named_by_the_renderer_exist() {
    use naga::ShaderStage::{Fragment, Vertex};
    let mesh = entry_points(&load("mesh.wgsl"));
    for ep in [(Vertex, "vs_main"), (Fragment, "fs_main")] {
        assert!(mesh.contains(&(ep.0, ep.1.to_owned())), "mesh.wgsl lacks {ep:?}: {mesh:?}");
    }
    let composite = entry_points(&load("composite.wgsl"));
    for ep in [(Vertex, "vs_fullscreen"), (Fragment, "fs_to_srgb_target"), (Fragment, "fs_to_gamma_target")] {
        assert!(composite.contains(&(ep.0, ep.1.to_owned())), "composite.wgsl lacks {ep:?}: {composite:?}");
    }
}

#[test]
fn camera_uniform_layout_matches_rust() {
    let module = load("mesh.wgsl");
    let mut layouter = naga::proc::Layouter::default();
    layouter.update(module.to_ctx()).expect("layout");
    let (_, camera) = module
        .global_variables
        .iter()
        .find(|(_, g)| g.name.as_deref() == Some("camera"))
        .expect("mesh.wgsl declares `camera`");
    assert_eq!(camera.space, naga::AddressSpace::Uniform);
    assert_eq!(
        layouter[camera.ty].size as usize,
        size_of::<sam3d_studio::render::gpu::CameraUniform>(),
        "WGSL Camera and Rust CameraUniform differ in size"
    );
}

#[test]
fn vertex_inputs_match_rust_layouts() {
    // Locations 0–1 come from GpuVertex (2 × vec3<f32>), 2–4 from InstanceData (3 × vec4<f32>).
    let module = load("mesh.wgsl");
    let vs = module.entry_points.iter().find(|e| e.name == "vs_main").expect("vs_main");
    let mut found: Vec<(u32, String)> = Vec::new();
    for arg in &vs.function.arguments {
        let ty = &module.types[arg.ty];
        let naga::TypeInner::Struct { members, .. } = &ty.inner else { panic!("vs_main takes structs") };
        for m in members {
            if let Some(naga::Binding::Location { location, .. }) = m.binding {
                let inner = &module.types[m.ty].inner;
                let desc = match inner {
                    naga::TypeInner::Vector { size, scalar } => format!("{size:?}{:?}{}", scalar.kind, scalar.width),
                    other => format!("{other:?}"),
                };
                found.push((location, desc));
            }
        }
    }
    found.sort();
    let expected: Vec<(u32, String)> = vec![
        (0, "TriFloat4".into()),
        (1, "TriFloat4".into()),
        (2, "QuadFloat4".into()),
        (3, "QuadFloat4".into()),
        (4, "QuadFloat4".into()),
    ];
    assert_eq!(found, expected);
    assert_eq!(size_of::<sam3d_studio::render::GpuVertex>(), 24);
}
