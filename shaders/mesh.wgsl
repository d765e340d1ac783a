// Lit triangle meshes for the 3D view (src/render). World = RAS+ millimetres.
//
// One draw call per mesh; its colour and placement come from a one-element "instance"
// (so recolouring or moving the crosshair marker never touches the vertex data).
// Output is linear colour with premultiplied alpha, written into an sRGB offscreen target.

struct Camera {
    clip_from_world: mat4x4<f32>,
    // xyz: eye position, RAS mm. w unused.
    eye: vec4<f32>,
};

@group(0) @binding(0) var<uniform> camera: Camera;

struct VertexIn {
    @location(0) position: vec3<f32>,
    @location(1) normal: vec3<f32>,
};

struct InstanceIn {
    // Linear RGB, straight alpha.
    @location(2) color: vec4<f32>,
    // world = position * w + xyz
    @location(3) offset_scale: vec4<f32>,
    // x: 1 = lit, 0 = flat colour
    @location(4) params: vec4<f32>,
};

struct VertexOut {
    @builtin(position) clip: vec4<f32>,
    @location(0) world: vec3<f32>,
    @location(1) normal: vec3<f32>,
    @location(2) color: vec4<f32>,
    @location(3) lit: f32,
};

@vertex
fn vs_main(v: VertexIn, inst: InstanceIn) -> VertexOut {
    let world = v.position * inst.offset_scale.w + inst.offset_scale.xyz;
    var out: VertexOut;
    out.clip = camera.clip_from_world * vec4<f32>(world, 1.0);
    out.world = world;
    out.normal = v.normal;
    out.color = inst.color;
    out.lit = inst.params.x;
    return out;
}

const AMBIENT: f32 = 0.22;
const DIFFUSE: f32 = 0.78;
const SPECULAR: f32 = 0.22;
const SHININESS: f32 = 40.0;
// Inside faces of open meshes are drawn a little darker so the cut is readable.
const BACK_FACE_DIM: f32 = 0.7;

@fragment
fn fs_main(in: VertexOut, @builtin(front_facing) front: bool) -> @location(0) vec4<f32> {
    let to_eye = normalize(camera.eye.xyz - in.world);
    var n = in.normal;
    if (dot(n, n) < 1e-12) {
        n = to_eye;
    }
    n = normalize(n);
    // Two-sided: light whichever side faces the viewer.
    if (dot(n, to_eye) < 0.0) {
        n = -n;
    }
    // Headlight: the light sits at the eye, so the half vector is the view vector.
    let diffuse = max(dot(n, to_eye), 0.0);
    let specular = SPECULAR * pow(diffuse, SHININESS);
    var rgb = in.color.rgb * (AMBIENT + DIFFUSE * diffuse) + vec3<f32>(specular);
    if (!front) {
        rgb = rgb * BACK_FACE_DIM;
    }
    rgb = mix(in.color.rgb, rgb, in.lit);
    let a = in.color.a;
    return vec4<f32>(rgb * a, a);
}
