//! Held-out measurements of the trained models, through the same loading path as user models.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use super::data::Batch;
use super::seeds;
use crate::KnowledgeBase;
use crate::model::{Classifier, PartExtractor};
use crate::modelinfo::PartOutput;
use crate::partset::PartSet;
use crate::partsworld::{self, SampleStream, SceneOptions};
use crate::similarity::{jaccard, realign};

/// Held-out batches of a split.
pub fn heldout_batches(
    seed: u64,
    opts: &SceneOptions,
    images: usize,
    batch: usize,
) -> impl Iterator<Item = Batch> {
    let batches = images.div_ceil(batch);
    SampleStream::new(seed, 0, opts, super::INPUT_SIZE as u32, batch, 1)
        .take(batches)
        .enumerate()
        .map(move |(i, mut samples)| {
            samples.truncate(images - i * batch);
            Batch::from_samples(&samples, Device::Cpu)
        })
}

/// Clean accuracy of a classifier over held-out images of `classes` (world indices, in the
/// classifier's label order).
pub fn classifier_accuracy(
    classifier: &Classifier,
    classes: &[usize],
    images: usize,
    batch: usize,
) -> anyhow::Result<f64> {
    let opts = SceneOptions {
        classes: classes.to_vec(),
        ..SceneOptions::default()
    };
    let (mut correct, mut total) = (0usize, 0usize);
    for b in heldout_batches(seeds::EVALUATION, &opts, images, batch) {
        let predictions = classifier.predict(&b.images.to_device(classifier.model().device()))?;
        for ((p, _), c) in predictions.iter().zip(&b.world_classes) {
            correct += (classes[*p] == *c) as usize;
            total += 1;
        }
    }
    Ok(correct as f64 / total.max(1) as f64)
}

/// Per-class loss weights for the part segmentation: `sqrt(median frequency / frequency)`,
/// clamped to `[0.1, 10]`, estimated from `images` training samples.
pub fn part_class_weights(opts: &SceneOptions, images: usize, device: Device) -> Tensor {
    let classes = partsworld::PARTS.len() + 1;
    let mut counts = vec![1.0f64; classes];
    for b in heldout_batches(seeds::TRAIN ^ 0xF, opts, images, 64) {
        let hist = b
            .labels
            .flatten(0, -1)
            .bincount::<Tensor>(None, classes as i64);
        let hist = Vec::<f64>::try_from(hist.to_kind(Kind::Double)).unwrap_or_default();
        for (c, h) in hist.iter().enumerate() {
            counts[c] += h;
        }
    }
    let mut sorted = counts.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[classes / 2];
    let weights: Vec<f32> = counts
        .iter()
        .map(|&c| (median / c).sqrt().clamp(0.1, 10.0) as f32)
        .collect();
    Tensor::from_slice(&weights).to_device(device)
}

fn world_parts_of_channels(extractor: &PartExtractor, kb: &KnowledgeBase) -> Vec<Option<usize>> {
    let mut map = vec![None; extractor.labels().len()];
    for (channel, name) in extractor.part_channels() {
        map[channel] = kb.part_index(name);
    }
    map
}

fn to_parts(channels: &PartSet, map: &[Option<usize>]) -> PartSet {
    channels
        .iter()
        .filter_map(|c| map.get(c).copied().flatten())
        .collect()
}

/// Chooses the segmentation thresholds (minimum area fraction, minimum mean confidence) that
/// maximise the mean image-level Jaccard between found and visible parts on validation data.
/// Leaves the best setting on `extractor`.
pub fn choose_part_thresholds(
    extractor: &mut PartExtractor,
    images: usize,
    batch: usize,
) -> anyhow::Result<(f32, f32)> {
    let kb = KnowledgeBase::load(crate::paths::default_knowledge())?;
    let map = world_parts_of_channels(extractor, &kb);
    let mut outputs = Vec::new();
    for b in heldout_batches(seeds::VALIDATION, &SceneOptions::default(), images, batch) {
        let raw = tch::no_grad(|| extractor.raw(&b.images.to_device(extractor.model().device())))?;
        outputs.push((raw, b.visible));
    }
    let mut best = (f64::MIN, 0.0, 0.0);
    for &min_area in &[0.0005f32, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.008] {
        for &min_confidence in &[0.15f32, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7] {
            extractor.set_output(PartOutput::Segmentation {
                min_area,
                min_confidence,
            });
            let (mut sum, mut n) = (0.0, 0usize);
            for (raw, visible) in &outputs {
                for (found, vis) in extractor.decide(raw).iter().zip(visible) {
                    let truth: PartSet = vis.iter().copied().collect();
                    sum += jaccard(&to_parts(found, &map), &truth) as f64;
                    n += 1;
                }
            }
            let mean = sum / n.max(1) as f64;
            if mean > best.0 {
                best = (mean, min_area, min_confidence);
            }
        }
    }
    extractor.set_output(PartOutput::Segmentation {
        min_area: best.1,
        min_confidence: best.2,
    });
    Ok((best.1, best.2))
}

/// Held-out measurements of the part extractor.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExtractorMetrics {
    pub images: usize,
    /// Pixel-level intersection over union per part (parts never present and never predicted
    /// are left out).
    pub part_iou: BTreeMap<String, f64>,
    /// Mean of `part_iou`.
    pub mean_part_iou: f64,
    /// Mean image-level Jaccard between the parts reported and the visible parts.
    pub mean_image_jaccard: f64,
    /// The same, per class.
    pub class_image_jaccard: BTreeMap<String, f64>,
    /// Clean defense accuracy per class set: how often realignment from K's parts alone
    /// (ignoring M) picks the true class.
    pub realignment_accuracy: BTreeMap<String, f64>,
}

/// Measures the extractor on held-out images of all classes.
pub fn extractor_metrics(
    extractor: &PartExtractor,
    kb: &KnowledgeBase,
    images: usize,
    batch: usize,
) -> anyhow::Result<ExtractorMetrics> {
    let map = world_parts_of_channels(extractor, kb);
    let channels = extractor.labels().len() as i64;
    let mut inter = vec![0.0f64; channels as usize];
    let mut union = vec![0.0f64; channels as usize];
    let mut jac_sum = 0.0;
    let mut per_class: BTreeMap<String, (f64, usize)> = BTreeMap::new();
    let class_sets: Vec<(String, KnowledgeBase)> = kb
        .class_sets()
        .iter()
        .map(|s| Ok((s.name.clone(), kb.restrict(&s.classes)?)))
        .collect::<anyhow::Result<_>>()?;
    let mut realign_hits: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut n = 0usize;
    for b in heldout_batches(seeds::EVALUATION, &SceneOptions::default(), images, batch) {
        let raw = tch::no_grad(|| extractor.raw(&b.images.to_device(extractor.model().device())))?
            .to_device(Device::Cpu);
        let predicted = raw.argmax(1, false);
        let p1 =
            predicted
                .one_hot(channels)
                .sum_dim_intlist([0, 1, 2].as_slice(), false, Kind::Double);
        let t1 =
            b.labels
                .one_hot(channels)
                .sum_dim_intlist([0, 1, 2].as_slice(), false, Kind::Double);
        let both = predicted
            .where_self(
                &predicted.eq_tensor(&b.labels),
                &Tensor::full_like(&predicted, -1),
            )
            .flatten(0, -1);
        let both = both
            .masked_select(&both.ge(0))
            .bincount::<Tensor>(None, channels)
            .to_kind(Kind::Double);
        let (p1, t1, both) = (
            Vec::<f64>::try_from(p1)?,
            Vec::<f64>::try_from(t1)?,
            Vec::<f64>::try_from(both)?,
        );
        for c in 0..channels as usize {
            inter[c] += both[c];
            union[c] += p1[c] + t1[c] - both[c];
        }
        for ((found, vis), class) in extractor
            .decide(&raw)
            .iter()
            .zip(&b.visible)
            .zip(&b.world_classes)
        {
            let found = to_parts(found, &map);
            let truth: PartSet = vis.iter().copied().collect();
            let j = jaccard(&found, &truth) as f64;
            jac_sum += j;
            n += 1;
            let name = partsworld::CLASSES[*class].to_owned();
            let e = per_class.entry(name.clone()).or_default();
            e.0 += j;
            e.1 += 1;
            for (set_name, set_kb) in &class_sets {
                if let Some(truth_class) = set_kb.class_index(&name) {
                    let r = realign(set_kb, &found, None);
                    let e = realign_hits.entry(set_name.clone()).or_default();
                    e.0 += (r.class == Some(truth_class)) as usize;
                    e.1 += 1;
                }
            }
        }
    }
    let mut part_iou = BTreeMap::new();
    for (c, name) in extractor.part_channels() {
        if union[c] > 0.0 {
            part_iou.insert(name.to_owned(), inter[c] / union[c]);
        }
    }
    let mean_part_iou = part_iou.values().sum::<f64>() / part_iou.len().max(1) as f64;
    Ok(ExtractorMetrics {
        images: n,
        mean_part_iou,
        part_iou,
        mean_image_jaccard: jac_sum / n.max(1) as f64,
        class_image_jaccard: per_class
            .into_iter()
            .map(|(k, (s, c))| (k, s / c.max(1) as f64))
            .collect(),
        realignment_accuracy: realign_hits
            .into_iter()
            .map(|(k, (h, t))| (k, h as f64 / t.max(1) as f64))
            .collect(),
    })
}
