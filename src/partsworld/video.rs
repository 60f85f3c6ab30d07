//! Clips of moving scenes for video demos: a sequence of scenes, each shown for a while.

use super::{CLASSES, Sample, Scene, SceneOptions};

/// A script of scenes shown one after another, each for `scene_seconds`.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoScript {
    /// The scenes in order.
    pub scenes: Vec<Scene>,
    /// How long each scene is shown.
    pub scene_seconds: f32,
}

/// A clip of `duration` seconds made of scenes of `scene_seconds` each, from the world `seed`
/// (scene `i` is `Scene::random(seed, i, opts)`).
pub fn video_scenes(
    seed: u64,
    opts: &SceneOptions,
    duration: f32,
    scene_seconds: f32,
) -> VideoScript {
    let scene_seconds = scene_seconds.max(0.1);
    let n = (duration / scene_seconds).ceil().max(1.0) as u64;
    VideoScript {
        scenes: (0..n).map(|i| Scene::random(seed, i, opts)).collect(),
        scene_seconds,
    }
}

impl VideoScript {
    /// Total length in seconds.
    pub fn duration(&self) -> f32 {
        self.scenes.len() as f32 * self.scene_seconds
    }

    /// The scene shown at time `t` and the time within it.
    pub fn scene_at(&self, t: f32) -> (usize, &Scene, f32) {
        let i = ((t.max(0.0) / self.scene_seconds) as usize).min(self.scenes.len() - 1);
        (i, &self.scenes[i], t - i as f32 * self.scene_seconds)
    }

    /// The frame at time `t`.
    pub fn render(&self, t: f32, width: u32, height: u32) -> Sample {
        let (_, scene, local) = self.scene_at(t);
        scene.render(local, width, height)
    }

    /// Per scene: start time, end time and class name (for ground-truth files).
    pub fn timeline(&self) -> Vec<(f32, f32, &'static str)> {
        self.scenes
            .iter()
            .enumerate()
            .map(|(i, s)| {
                (
                    i as f32 * self.scene_seconds,
                    (i + 1) as f32 * self.scene_seconds,
                    CLASSES[s.class()],
                )
            })
            .collect()
    }
}
