//! Video frames (raw bytes, any size and stride) to canonical images: `float32 [N,3,h,w]` RGB
//! in `[0,1]` on the model's device.
//!
//! The frame is cropped in place, resized with antialiased bilinear interpolation while still
//! 8-bit (on the CPU), and only the small result is converted to float and colour-converted.
//! For YUV formats the planes are resized separately and converted afterwards (the conversion
//! is affine, so this equals converting first, up to clamping). On the CPU all of it runs in
//! Rust ([`frames_to_inputs`], which can also write a model's normalised input directly),
//! for every device: with a GPU model only the small result is uploaded (a 64x64 float
//! image is 48 KiB, a 1080p BGRx frame 8 MiB; uploading whole frames and resizing them on
//! the GPU made the element 2.8x slower at 1080p on an H200 machine). So the images are the
//! same bits on every device.

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

mod cpu;

pub use cpu::{InputFormat, InputMemory, MIN_BAND_ROWS, frames_to_inputs, frames_to_inputs_on};

/// Pixel formats understood by the pre-processor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PixelFormat {
    Rgb,
    Bgr,
    Rgba,
    Bgra,
    Rgbx,
    Bgrx,
    Xrgb,
    Xbgr,
    Argb,
    Abgr,
    I420,
    Nv12,
}

impl PixelFormat {
    /// All supported formats.
    pub const ALL: [PixelFormat; 12] = [
        Self::Rgb,
        Self::Bgr,
        Self::Rgba,
        Self::Bgra,
        Self::Rgbx,
        Self::Bgrx,
        Self::Xrgb,
        Self::Xbgr,
        Self::Argb,
        Self::Abgr,
        Self::I420,
        Self::Nv12,
    ];

    /// Bytes per pixel and the byte offsets of R, G and B, for packed RGB formats.
    pub fn packed_layout(self) -> Option<(usize, [usize; 3])> {
        Some(match self {
            Self::Rgb => (3, [0, 1, 2]),
            Self::Bgr => (3, [2, 1, 0]),
            Self::Rgba | Self::Rgbx => (4, [0, 1, 2]),
            Self::Bgra | Self::Bgrx => (4, [2, 1, 0]),
            Self::Xrgb | Self::Argb => (4, [1, 2, 3]),
            Self::Xbgr | Self::Abgr => (4, [3, 2, 1]),
            Self::I420 | Self::Nv12 => return None,
        })
    }

    /// Number of planes.
    pub fn planes(self) -> usize {
        match self {
            Self::I420 => 3,
            Self::Nv12 => 2,
            _ => 1,
        }
    }

    /// GStreamer's name for the format.
    pub fn gst_name(self) -> &'static str {
        match self {
            Self::Rgb => "RGB",
            Self::Bgr => "BGR",
            Self::Rgba => "RGBA",
            Self::Bgra => "BGRA",
            Self::Rgbx => "RGBx",
            Self::Bgrx => "BGRx",
            Self::Xrgb => "xRGB",
            Self::Xbgr => "xBGR",
            Self::Argb => "ARGB",
            Self::Abgr => "ABGR",
            Self::I420 => "I420",
            Self::Nv12 => "NV12",
        }
    }

    /// Parses GStreamer's name for the format.
    pub fn from_gst_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.gst_name() == name)
    }
}

/// YUV to RGB conversion matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum YuvMatrix {
    #[default]
    Bt601,
    Bt709,
}

impl YuvMatrix {
    /// The factors of `R = Y + rv Cr`, `G = Y - gu Cb - gv Cr`, `B = Y + bu Cb` (Y in
    /// `[0,1]`, Cb and Cr in `[-0.5,0.5]`): `(rv, gu, gv, bu)`.
    pub fn coefficients(self) -> (f64, f64, f64, f64) {
        match self {
            Self::Bt601 => (1.402, 0.344136, 0.714136, 1.772),
            Self::Bt709 => (1.5748, 0.187324, 0.468124, 1.8556),
        }
    }
}

/// Colour description of YUV frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct YuvColor {
    /// Conversion matrix.
    pub matrix: YuvMatrix,
    /// Full range (0–255) rather than limited (16–235 luma, 16–240 chroma).
    pub full_range: bool,
}

/// One plane of a frame.
#[derive(Debug, Clone, Copy)]
pub struct Plane<'a> {
    /// The plane's bytes, starting at its first row.
    pub data: &'a [u8],
    /// Bytes from one row to the next.
    pub stride: usize,
}

/// A borrowed video frame.
#[derive(Debug, Clone)]
pub struct Frame<'a> {
    pub format: PixelFormat,
    pub width: usize,
    pub height: usize,
    pub planes: Vec<Plane<'a>>,
    /// Colour description (YUV formats).
    pub color: YuvColor,
}

/// A video frame that owns its bytes (tests, benchmarks, synthetic sources).
#[derive(Debug, Clone)]
pub struct OwnedFrame {
    pub format: PixelFormat,
    pub width: usize,
    pub height: usize,
    /// Each plane's bytes and stride.
    pub planes: Vec<(Vec<u8>, usize)>,
    pub color: YuvColor,
}

impl OwnedFrame {
    /// Converts RGB bytes (`width*height*3`) to `format` (BT.601 limited range for YUV), rows
    /// padded by `pad` bytes.
    pub fn from_rgb(
        rgb: &[u8],
        width: usize,
        height: usize,
        format: PixelFormat,
        pad: usize,
    ) -> Self {
        Self {
            format,
            width,
            height,
            planes: rgb_to_format(rgb, width, height, format, pad),
            color: YuvColor::default(),
        }
    }

    /// A black frame (all bytes zero; YUV planes are set to black).
    pub fn blank(width: usize, height: usize, format: PixelFormat) -> Self {
        Self::from_rgb(&vec![0; width * height * 3], width, height, format, 0)
    }

    /// Borrows the planes.
    pub fn as_frame(&self) -> Frame<'_> {
        Frame {
            format: self.format,
            width: self.width,
            height: self.height,
            planes: self
                .planes
                .iter()
                .map(|(data, stride)| Plane {
                    data,
                    stride: *stride,
                })
                .collect(),
            color: self.color,
        }
    }

    /// The planes' payload back to back without row padding (a raw video file's frame).
    pub fn tight_bytes(&self) -> Vec<u8> {
        let frame = self.as_frame();
        let mut out = Vec::new();
        for (i, (data, stride)) in self.planes.iter().enumerate() {
            let (rows, row_bytes, _) = frame.plane_geometry(i);
            for r in 0..rows {
                out.extend_from_slice(&data[r * stride..r * stride + row_bytes]);
            }
        }
        out
    }
}

/// How a frame's aspect ratio is fitted to the model's input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum Scaling {
    /// Crop the centre region with the model's aspect ratio, then resize.
    #[default]
    Crop,
    /// Resize the whole frame, distorting the aspect ratio.
    Stretch,
}

/// A frame that does not describe valid memory.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FrameError {
    #[error("frame {format:?} needs {expected} planes, got {got}")]
    PlaneCount {
        format: PixelFormat,
        expected: usize,
        got: usize,
    },
    #[error("frame size {width}x{height} is empty")]
    Empty { width: usize, height: usize },
    #[error(
        "plane {plane}: {len} bytes is too small for {rows} rows of {row_bytes} bytes at stride {stride}"
    )]
    PlaneTooSmall {
        plane: usize,
        len: usize,
        rows: usize,
        row_bytes: usize,
        stride: usize,
    },
}

impl<'a> Frame<'a> {
    /// A packed RGB-family frame.
    pub fn packed(
        format: PixelFormat,
        width: usize,
        height: usize,
        data: &'a [u8],
        stride: usize,
    ) -> Self {
        Self {
            format,
            width,
            height,
            planes: vec![Plane { data, stride }],
            color: YuvColor::default(),
        }
    }

    /// Plane geometry: rows, bytes per row (payload), elements per pixel.
    fn plane_geometry(&self, plane: usize) -> (usize, usize, usize) {
        let (cw, ch) = (self.width.div_ceil(2), self.height.div_ceil(2));
        match (self.format, plane) {
            (f, 0) if f.packed_layout().is_some() => {
                let bpp = f.packed_layout().expect("packed").0;
                (self.height, self.width * bpp, bpp)
            }
            (_, 0) => (self.height, self.width, 1),
            (PixelFormat::I420, _) => (ch, cw, 1),
            (_, _) => (ch, cw * 2, 2),
        }
    }

    /// Checks planes against the format and size.
    pub fn validate(&self) -> Result<(), FrameError> {
        if self.width == 0 || self.height == 0 {
            return Err(FrameError::Empty {
                width: self.width,
                height: self.height,
            });
        }
        let expected = self.format.planes();
        if self.planes.len() != expected {
            return Err(FrameError::PlaneCount {
                format: self.format,
                expected,
                got: self.planes.len(),
            });
        }
        for (i, p) in self.planes.iter().enumerate() {
            let (rows, row_bytes, _) = self.plane_geometry(i);
            if p.stride < row_bytes || p.data.len() < p.stride * (rows - 1) + row_bytes {
                return Err(FrameError::PlaneTooSmall {
                    plane: i,
                    len: p.data.len(),
                    rows,
                    row_bytes,
                    stride: p.stride,
                });
            }
        }
        Ok(())
    }

    /// Wraps plane `i` as a `uint8 [rows, cols, elems]` CPU tensor without copying.
    ///
    /// The tensor borrows the frame's memory: it (and any view of it) must be dropped before
    /// the frame's data is.
    #[cfg(test)]
    fn plane_tensor(&self, i: usize) -> Tensor {
        let (rows, row_bytes, elems) = self.plane_geometry(i);
        let p = self.planes[i];
        let cols = row_bytes / elems;
        // SAFETY: validate() checked that the plane holds `rows` rows of `row_bytes` bytes at
        // `stride`; callers only keep tensors derived by copying operations.
        unsafe {
            Tensor::from_blob(
                p.data.as_ptr(),
                &[rows as i64, cols as i64, elems as i64],
                &[p.stride as i64, elems as i64, 1],
                Kind::Uint8,
                Device::Cpu,
            )
        }
    }
}

/// The source region `(x, y, w, h)` of a `width x height` frame that maps to an `h x w` input.
pub fn source_region(
    width: usize,
    height: usize,
    target: (i64, i64),
    scaling: Scaling,
) -> (usize, usize, usize, usize) {
    match scaling {
        Scaling::Stretch => (0, 0, width, height),
        Scaling::Crop => {
            let (th, tw) = (target.0 as f64, target.1 as f64);
            let (fw, fh) = (width as f64, height as f64);
            let (cw, ch) = if fw / fh > tw / th {
                ((fh * tw / th).round().max(1.0) as usize, height)
            } else {
                (width, (fw * th / tw).round().max(1.0) as usize)
            };
            // Even offsets keep chroma planes aligned with luma.
            let x = ((width - cw) / 2) & !1;
            let y = ((height - ch) / 2) & !1;
            (x, y, cw, ch)
        }
    }
}

/// Resizes `[1,C,H,W]` uint8 CPU data to `h x w` (antialiased bilinear), still uint8:
/// PyTorch's uint8 kernel, the one torchvision uses.
#[cfg(test)]
fn resize_plane(x: &Tensor, h: i64, w: i64) -> Tensor {
    let size = x.size();
    let same = size[2] == h && size[3] == w;
    if same {
        x.contiguous()
    } else {
        x.internal_upsample_bilinear2d_aa([h, w], false, None, None)
    }
}

/// The planes of one frame cropped and resized to `size`, still 8-bit:
/// `[1,bpp,h,w]` for packed formats, `[1,1,h,w]` luma and `[1,2,h,w]` chroma for YUV.
#[cfg(test)]
fn resized_planes(
    frame: &Frame<'_>,
    size: (i64, i64),
    scaling: Scaling,
) -> Result<Vec<Tensor>, FrameError> {
    frame.validate()?;
    let (h, w) = size;
    let (x0, y0, cw, ch) = source_region(frame.width, frame.height, size, scaling);
    let plane = |i: usize, sub: usize| -> Tensor {
        let (x, y) = (x0 / sub, y0 / sub);
        let (cw, ch) = (cw.div_ceil(sub), ch.div_ceil(sub));
        let t = frame
            .plane_tensor(i)
            .narrow(0, y as i64, ch as i64)
            .narrow(1, x as i64, cw as i64);
        // [rows, cols, elems] -> [1, elems, rows, cols] (a channels-last view).
        resize_plane(&t.permute([2, 0, 1]).unsqueeze(0), h, w)
    };
    Ok(match frame.format {
        f if f.packed_layout().is_some() => vec![plane(0, 1)],
        PixelFormat::I420 => vec![plane(0, 1), Tensor::cat(&[plane(1, 2), plane(2, 2)], 1)],
        _ => vec![plane(0, 1), plane(1, 2)],
    })
}

/// Resized planes of frames of one format and colour (`[N,..]` each) to canonical images.
#[cfg(test)]
fn planes_to_images(format: PixelFormat, color: YuvColor, planes: &[Tensor]) -> Tensor {
    if let Some((_, rgb)) = format.packed_layout() {
        let index = Tensor::from_slice(&rgb.map(|c| c as i64));
        // Select the colour channels while still 8-bit, then one conversion to [0,1].
        planes[0]
            .index_select(1, &index)
            .contiguous()
            .to_kind(Kind::Float)
            * (1.0 / 255.0)
    } else {
        yuv_to_rgb(
            &planes[0].to_kind(Kind::Float),
            &planes[1].to_kind(Kind::Float),
            color,
        )
    }
}

/// Converts one frame to a canonical image `[1,3,h,w]` on `device`.
pub fn frame_to_image(
    frame: &Frame<'_>,
    size: (i64, i64),
    scaling: Scaling,
    device: Device,
) -> Result<Tensor, FrameError> {
    frames_to_images(std::slice::from_ref(frame), size, scaling, device)
}

/// YUV (float, 0–255 units; `y` `[N,1,h,w]`, `uv` `[N,2,h,w]`) to RGB in `[0,1]`.
#[cfg(test)]
fn yuv_to_rgb(y: &Tensor, uv: &Tensor, color: YuvColor) -> Tensor {
    let (y, c) = if color.full_range {
        (y / 255.0, (uv - 128.0) / 255.0)
    } else {
        ((y - 16.0) / 219.0, (uv - 128.0) / 224.0)
    };
    let (cb, cr) = (c.narrow(1, 0, 1), c.narrow(1, 1, 1));
    let (rv, gu, gv, bu) = color.matrix.coefficients();
    let r = &y + &cr * rv;
    let g = &y - &cb * gu - &cr * gv;
    let b = &y + &cb * bu;
    Tensor::cat(&[r, g, b], 1).clamp(0.0, 1.0)
}

/// Converts frames to one canonical batch `[N,3,h,w]` on `device`.
///
/// Each frame is cropped and resized on its own (8-bit); the conversion to float and colour
/// runs once for each run of frames with the same format and colour description.
pub fn frames_to_images(
    frames: &[Frame<'_>],
    size: (i64, i64),
    scaling: Scaling,
    device: Device,
) -> Result<Tensor, FrameError> {
    let image = frames_to_inputs(frames, &[InputFormat::canonical(size)], scaling)?
        .pop()
        .expect("one format, one tensor");
    Ok(if device == Device::Cpu {
        image
    } else {
        image.to_device(device)
    })
}

/// [`frames_to_images`] with libtorch's tensor operations (its uint8 antialiased resize, as
/// torchvision runs it): the oracle the Rust path is tested against, bit for bit.
#[cfg(test)]
fn frames_to_images_with_tensors(
    frames: &[Frame<'_>],
    size: (i64, i64),
    scaling: Scaling,
) -> Result<Tensor, FrameError> {
    let resized = frames
        .iter()
        .map(|f| resized_planes(f, size, scaling))
        .collect::<Result<Vec<_>, _>>()?;
    let mut images = Vec::new();
    let mut start = 0;
    while start < frames.len() {
        let key = (frames[start].format, frames[start].color);
        let end = start
            + frames[start..]
                .iter()
                .take_while(|f| (f.format, f.color) == key)
                .count();
        let run = &resized[start..end];
        let planes: Vec<Tensor> = (0..run[0].len())
            .map(|p| match run {
                [one] => one[p].shallow_clone(),
                _ => Tensor::cat(&run.iter().map(|r| &r[p]).collect::<Vec<_>>(), 0),
            })
            .collect();
        images.push(planes_to_images(key.0, key.1, &planes));
        start = end;
    }
    Ok(match images.len() {
        0 => Tensor::zeros([0, 3, size.0, size.1], (Kind::Float, Device::Cpu)),
        1 => images.pop().expect("one run"),
        _ => Tensor::cat(&images, 0),
    })
}

/// Packs a canonical image `[3,h,w]` (values in `[0,1]`) into RGB bytes, row-major.
pub fn image_to_rgb_bytes(image: &Tensor) -> Vec<u8> {
    let t = (image.to_device(Device::Cpu) * 255.0)
        .round()
        .clamp(0.0, 255.0)
        .to_kind(Kind::Uint8)
        .permute([1, 2, 0])
        .contiguous();
    Vec::<u8>::try_from(t.flatten(0, -1)).expect("uint8 tensor")
}

/// Wraps RGB bytes (`h*w*3`, row-major) as a canonical image `[3,h,w]` on the CPU.
pub fn rgb_bytes_to_image(bytes: &[u8], width: usize, height: usize) -> Tensor {
    Tensor::from_slice(bytes)
        .view([height as i64, width as i64, 3])
        .permute([2, 0, 1])
        .to_kind(Kind::Float)
        / 255.0
}

/// Converts RGB bytes to another format for tests and synthetic sources: returns the planes'
/// bytes and strides (each row padded by `pad` bytes).
pub fn rgb_to_format(
    rgb: &[u8],
    width: usize,
    height: usize,
    format: PixelFormat,
    pad: usize,
) -> Vec<(Vec<u8>, usize)> {
    let px = |x: usize, y: usize| {
        let i = (y * width + x) * 3;
        [rgb[i], rgb[i + 1], rgb[i + 2]]
    };
    if let Some((bpp, offsets)) = format.packed_layout() {
        let stride = width * bpp + pad;
        let mut out = vec![0xA5u8; stride * height];
        for y in 0..height {
            for x in 0..width {
                let p = px(x, y);
                let o = y * stride + x * bpp;
                if bpp == 4 {
                    out[o..o + 4].fill(255);
                }
                for c in 0..3 {
                    out[o + offsets[c]] = p[c];
                }
            }
        }
        return vec![(out, stride)];
    }
    // BT.601 limited range, chroma averaged over 2x2 blocks.
    let to_yuv = |p: [u8; 3]| {
        let (r, g, b) = (p[0] as f32, p[1] as f32, p[2] as f32);
        let y = 16.0 + 0.256788 * r + 0.504129 * g + 0.097906 * b;
        let u = 128.0 - 0.148223 * r - 0.290993 * g + 0.439216 * b;
        let v = 128.0 + 0.439216 * r - 0.367788 * g - 0.071427 * b;
        (y, u, v)
    };
    let ystride = width + pad;
    let mut yplane = vec![0u8; ystride * height];
    for y in 0..height {
        for x in 0..width {
            yplane[y * ystride + x] = to_yuv(px(x, y)).0.round().clamp(0.0, 255.0) as u8;
        }
    }
    let (cw, ch) = (width.div_ceil(2), height.div_ceil(2));
    let chroma = |cx: usize, cy: usize| {
        let mut acc = (0.0, 0.0, 0.0);
        for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
            let (x, y) = ((cx * 2 + dx).min(width - 1), (cy * 2 + dy).min(height - 1));
            let (_, u, v) = to_yuv(px(x, y));
            acc = (acc.0 + u, acc.1 + v, acc.2 + 1.0);
        }
        ((acc.0 / acc.2).round() as u8, (acc.1 / acc.2).round() as u8)
    };
    match format {
        PixelFormat::I420 => {
            let cstride = cw + pad;
            let mut u = vec![0u8; cstride * ch];
            let mut v = vec![0u8; cstride * ch];
            for cy in 0..ch {
                for cx in 0..cw {
                    let (cu, cv) = chroma(cx, cy);
                    u[cy * cstride + cx] = cu;
                    v[cy * cstride + cx] = cv;
                }
            }
            vec![(yplane, ystride), (u, cstride), (v, cstride)]
        }
        _ => {
            let cstride = cw * 2 + pad;
            let mut uv = vec![0u8; cstride * ch];
            for cy in 0..ch {
                for cx in 0..cw {
                    let (cu, cv) = chroma(cx, cy);
                    uv[cy * cstride + cx * 2] = cu;
                    uv[cy * cstride + cx * 2 + 1] = cv;
                }
            }
            vec![(yplane, ystride), (uv, cstride)]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(width: usize, height: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(width * height * 3);
        for y in 0..height {
            for x in 0..width {
                v.extend([
                    (x * 255 / width.max(2).saturating_sub(1).max(1)).min(255) as u8,
                    (y * 255 / height.max(2).saturating_sub(1).max(1)).min(255) as u8,
                    ((x + y) % 256) as u8,
                ]);
            }
        }
        v
    }

    fn convert(
        rgb: &[u8],
        w: usize,
        h: usize,
        format: PixelFormat,
        pad: usize,
        size: (i64, i64),
        scaling: Scaling,
    ) -> Tensor {
        let planes = rgb_to_format(rgb, w, h, format, pad);
        let frame = Frame {
            format,
            width: w,
            height: h,
            planes: planes
                .iter()
                .map(|(d, s)| Plane {
                    data: d,
                    stride: *s,
                })
                .collect(),
            color: YuvColor::default(),
        };
        frame_to_image(&frame, size, scaling, Device::Cpu).unwrap()
    }

    #[test]
    fn packed_formats_agree_exactly_at_native_size() {
        let (w, h) = (13, 7);
        let rgb = gradient(w, h);
        let reference = rgb_bytes_to_image(&rgb, w, h).unsqueeze(0);
        for format in PixelFormat::ALL
            .into_iter()
            .filter(|f| f.packed_layout().is_some())
        {
            for pad in [0, 3] {
                let img = convert(
                    &rgb,
                    w,
                    h,
                    format,
                    pad,
                    (h as i64, w as i64),
                    Scaling::Stretch,
                );
                let diff = (&img - &reference).abs().max().double_value(&[]);
                assert!(diff < 1e-6, "{format:?} pad {pad}: {diff}");
            }
        }
    }

    #[test]
    fn packed_formats_agree_after_resize() {
        let (w, h) = (321, 239);
        let rgb = gradient(w, h);
        let reference = convert(&rgb, w, h, PixelFormat::Rgb, 0, (64, 64), Scaling::Crop);
        assert_eq!(reference.size(), [1, 3, 64, 64]);
        for format in PixelFormat::ALL
            .into_iter()
            .filter(|f| f.packed_layout().is_some())
        {
            let img = convert(&rgb, w, h, format, 5, (64, 64), Scaling::Crop);
            let diff = (&img - &reference).abs().max().double_value(&[]);
            assert!(diff < 1e-6, "{format:?}: {diff}");
        }
    }

    #[test]
    fn yuv_formats_are_close_to_rgb() {
        let (w, h) = (321, 239);
        let rgb = gradient(w, h);
        let reference = convert(&rgb, w, h, PixelFormat::Rgb, 0, (32, 48), Scaling::Stretch);
        for format in [PixelFormat::I420, PixelFormat::Nv12] {
            let img = convert(&rgb, w, h, format, 7, (32, 48), Scaling::Stretch);
            let mean = (&img - &reference)
                .abs()
                .mean(Kind::Float)
                .double_value(&[]);
            assert!(mean < 0.02, "{format:?}: mean abs diff {mean}");
        }
    }

    /// Every format (YUV in both matrices and ranges), padded rows, crop and stretch, several
    /// frames: the Rust path's canonical images equal the tensor path's on the CPU, bit for bit.
    #[test]
    fn the_cpu_path_equals_the_tensor_path_bit_for_bit() {
        tch::set_num_threads(1);
        let (w, h) = (321, 239);
        let rgb: Vec<u8> = gradient(w, h)
            .iter()
            .enumerate()
            .map(|(i, &v)| v ^ ((i * 7919 % 61) as u8))
            .collect();
        let colors = [
            YuvColor::default(),
            YuvColor {
                matrix: YuvMatrix::Bt709,
                full_range: true,
            },
        ];
        for format in PixelFormat::ALL {
            for color in colors {
                let mut owned = OwnedFrame::from_rgb(&rgb, w, h, format, 5);
                owned.color = color;
                let frames = [owned.as_frame(), owned.as_frame()];
                for (size, scaling) in [((64, 64), Scaling::Crop), ((40, 56), Scaling::Stretch)] {
                    let ours = frames_to_images(&frames, size, scaling, Device::Cpu).unwrap();
                    let tensors = frames_to_images_with_tensors(&frames, size, scaling).unwrap();
                    assert_eq!(ours.size(), tensors.size());
                    let differ = ours.ne_tensor(&tensors).sum(Kind::Int64).int64_value(&[]);
                    assert_eq!(differ, 0, "{format:?} {color:?} {size:?} {scaling:?}");
                }
            }
        }
    }

    /// Frames pre-processed over 2, 3 or 7 threads (whole frames or bands of rows, 1 to 8
    /// frames) give the inputs of the whole resize, bit for bit, for every format and for
    /// float and uint8 inputs in every memory layout, of different sizes, for the first frame
    /// of a batch and the others.
    #[test]
    fn inputs_resized_in_bands_equal_the_whole_resize() {
        let (w, h) = (321, 239);
        let rgb = gradient(w, h);
        let other: Vec<u8> = rgb.iter().rev().map(|v| v ^ 0x5a).collect();
        let formats = [
            InputFormat {
                size: (64, 64),
                scale: [4.0, 3.0, 2.0],
                offset: [-2.0, -1.5, -1.0],
                bgr: false,
                uint8: false,
                memory: InputMemory::ChannelsLast,
            },
            InputFormat {
                size: (41, 30),
                scale: [1.0; 3],
                offset: [0.0; 3],
                bgr: true,
                uint8: true,
                memory: InputMemory::Nchw,
            },
            InputFormat {
                size: (64, 64),
                scale: [0.5, 2.0, 3.0],
                offset: [0.25, -1.0, 0.5],
                bgr: true,
                uint8: false,
                memory: InputMemory::Nchw,
            },
            InputFormat {
                size: (17, 23),
                scale: [1.0; 3],
                offset: [0.0; 3],
                bgr: false,
                uint8: true,
                memory: InputMemory::Nhwc,
            },
        ];
        for threads in [2, 3, 7] {
            let fork = crate::fork_join::ForkJoin::new(threads).expect("threads");
            for format in PixelFormat::ALL {
                let owned = [&rgb, &other].map(|rgb| OwnedFrame::from_rgb(rgb, w, h, format, 5));
                let frames = owned.each_ref().map(OwnedFrame::as_frame);
                // Frames alternating between the two images, fewer and more than the threads.
                for count in [1, 2, 3, 5, 8] {
                    let frames: Vec<Frame<'_>> =
                        (0..count).map(|i| frames[i % 2].clone()).collect();
                    let whole = frames_to_inputs(&frames, &formats, Scaling::Crop).unwrap();
                    let split =
                        frames_to_inputs_on(&frames, &formats, Scaling::Crop, Some(&fork)).unwrap();
                    for (a, b) in whole.iter().zip(&split) {
                        assert_eq!(a.size(), b.size());
                        assert_eq!(a.stride(), b.stride());
                        let differ = a.ne_tensor(b).sum(Kind::Int64).int64_value(&[]);
                        assert_eq!(differ, 0, "{format:?}, {count} frames, {threads} threads");
                    }
                }
            }
        }
    }

    #[test]
    fn crop_region_is_centred_with_target_aspect() {
        assert_eq!(
            source_region(640, 480, (64, 64), Scaling::Crop),
            (80, 0, 480, 480)
        );
        assert_eq!(
            source_region(480, 640, (64, 64), Scaling::Crop),
            (0, 80, 480, 480)
        );
        assert_eq!(
            source_region(640, 480, (64, 64), Scaling::Stretch),
            (0, 0, 640, 480)
        );
    }

    #[test]
    fn rejects_short_planes() {
        let data = vec![0u8; 10];
        let frame = Frame::packed(PixelFormat::Rgb, 4, 4, &data, 12);
        assert!(matches!(
            frame.validate(),
            Err(FrameError::PlaneTooSmall { .. })
        ));
        let frame = Frame::packed(PixelFormat::I420, 4, 4, &data, 4);
        assert!(matches!(
            frame.validate(),
            Err(FrameError::PlaneCount { .. })
        ));
        let frame = Frame::packed(PixelFormat::Rgb, 0, 4, &data, 12);
        assert!(matches!(frame.validate(), Err(FrameError::Empty { .. })));
    }

    #[test]
    fn gst_names_round_trip() {
        for f in PixelFormat::ALL {
            assert_eq!(PixelFormat::from_gst_name(f.gst_name()), Some(f));
        }
    }
}
