// Composites the 3D view's resolved offscreen image into egui's render pass.
//
// A single triangle covers the viewport egui set for the paint callback. The offscreen image
// holds linear colour with premultiplied alpha (transparent where nothing was drawn); it is
// laid over a vertical background gradient. Two fragment entry points: one for an sRGB render
// target (the hardware encodes), one for a plain 8-bit target (egui's usual; we encode).

@group(0) @binding(0) var scene: texture_2d<f32>;

struct VertexOut {
    @builtin(position) position: vec4<f32>,
    @location(0) uv: vec2<f32>,
};

@vertex
fn vs_fullscreen(@builtin(vertex_index) index: u32) -> VertexOut {
    // (0,0), (2,0), (0,2) in uv: one triangle covering the unit square.
    let uv = vec2<f32>(f32((index << 1u) & 2u), f32(index & 2u));
    var out: VertexOut;
    out.position = vec4<f32>(uv.x * 2.0 - 1.0, 1.0 - uv.y * 2.0, 0.0, 1.0);
    out.uv = uv;
    return out;
}

// Background, linear RGB: dark slate at the top, near-black at the bottom.
const BACKGROUND_TOP: vec3<f32> = vec3<f32>(0.046, 0.054, 0.080);
const BACKGROUND_BOTTOM: vec3<f32> = vec3<f32>(0.006, 0.007, 0.012);

fn composited(uv: vec2<f32>) -> vec4<f32> {
    let dims = vec2<f32>(textureDimensions(scene));
    let texel = vec2<i32>(clamp(uv * dims, vec2<f32>(0.0), dims - vec2<f32>(1.0)));
    let c = textureLoad(scene, texel, 0);
    let background = mix(BACKGROUND_TOP, BACKGROUND_BOTTOM, clamp(uv.y, 0.0, 1.0));
    return vec4<f32>(c.rgb + background * (1.0 - c.a), 1.0);
}

fn srgb_from_linear(c: vec3<f32>) -> vec3<f32> {
    let low = c * 12.92;
    let high = 1.055 * pow(c, vec3<f32>(1.0 / 2.4)) - vec3<f32>(0.055);
    return select(high, low, c <= vec3<f32>(0.0031308));
}

@fragment
fn fs_to_srgb_target(in: VertexOut) -> @location(0) vec4<f32> {
    return composited(in.uv);
}

@fragment
fn fs_to_gamma_target(in: VertexOut) -> @location(0) vec4<f32> {
    let c = composited(in.uv);
    return vec4<f32>(srgb_from_linear(clamp(c.rgb, vec3<f32>(0.0), vec3<f32>(1.0))), c.a);
}
