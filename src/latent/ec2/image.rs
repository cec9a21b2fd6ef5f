//! The image a pool launches, remembered between launches. An image found by name is
//! looked up again once its refresh time has passed, so a newly published image
//! reaches new instances; if that lookup fails, the image already known is kept
//! (a launch does not fail because DescribeImages did).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// An image to launch, with its root device and that volume's size (needed to
/// shape the root volume: a mapping must name the device, and a size or snapshot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub id: String,
    pub root_device: Option<String>,
    /// GiB.
    pub root_size: Option<i32>,
}

/// The image last found and when.
#[derive(Debug)]
pub struct ImageCache {
    /// `None`: found once and kept.
    refresh: Option<Duration>,
    held: Mutex<Option<(Arc<Image>, Instant)>>,
}

impl ImageCache {
    pub fn new(refresh: Option<Duration>) -> ImageCache {
        ImageCache {
            refresh,
            held: Mutex::new(None),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(Arc<Image>, Instant)>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The image known, if it need not be looked up again at `now`.
    pub fn fresh(&self, now: Instant) -> Option<Arc<Image>> {
        let held = self.lock();
        let (image, found) = held.as_ref()?;
        let due = self
            .refresh
            .is_some_and(|r| now.saturating_duration_since(*found) >= r);
        (!due).then(|| image.clone())
    }

    /// Keeps `image`, found at `now`; returns the image it replaces, if another.
    pub fn store(&self, image: Image, now: Instant) -> (Arc<Image>, Option<Arc<Image>>) {
        let image = Arc::new(image);
        let old = self
            .lock()
            .replace((image.clone(), now))
            .map(|(old, _)| old);
        let replaced = old.filter(|o| **o != *image);
        (image, replaced)
    }

    /// After a failed lookup: the image known is kept for another refresh period
    /// (so a failing DescribeImages is not called at every launch).
    pub fn keep(&self, now: Instant) -> Option<Arc<Image>> {
        let mut held = self.lock();
        let (image, found) = held.as_mut()?;
        *found = now;
        Some(image.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(id: &str) -> Image {
        Image {
            id: id.to_owned(),
            root_device: Some("/dev/xvda".to_owned()),
            root_size: Some(8),
        }
    }

    #[test]
    fn an_image_is_looked_up_again_after_its_refresh_time() {
        let t0 = Instant::now();
        let cache = ImageCache::new(Some(Duration::from_secs(60)));
        assert!(cache.fresh(t0).is_none(), "nothing known yet");
        let (first, replaced) = cache.store(image("ami-1"), t0);
        assert!(replaced.is_none());
        assert_eq!(cache.fresh(t0 + Duration::from_secs(59)), Some(first));
        assert!(cache.fresh(t0 + Duration::from_secs(60)).is_none(), "due");
        let (_, replaced) = cache.store(image("ami-2"), t0 + Duration::from_secs(60));
        assert_eq!(replaced.map(|i| i.id.clone()), Some("ami-1".into()));
        let (_, replaced) = cache.store(image("ami-2"), t0 + Duration::from_secs(120));
        assert!(replaced.is_none(), "the same image again replaces nothing");
    }

    #[test]
    fn a_failed_lookup_keeps_the_known_image_for_another_period() {
        let t0 = Instant::now();
        let cache = ImageCache::new(Some(Duration::from_secs(60)));
        assert!(cache.keep(t0).is_none(), "nothing to keep");
        cache.store(image("ami-1"), t0);
        let later = t0 + Duration::from_secs(90);
        assert!(cache.fresh(later).is_none());
        assert_eq!(
            cache.keep(later).map(|i| i.id.clone()),
            Some("ami-1".into())
        );
        assert!(cache.fresh(later + Duration::from_secs(30)).is_some());
    }

    #[test]
    fn without_refresh_an_image_is_kept_for_good() {
        let t0 = Instant::now();
        let cache = ImageCache::new(None);
        cache.store(image("ami-1"), t0);
        let later = cache.fresh(t0 + Duration::from_secs(86_400 * 365));
        assert_eq!(later.map(|i| i.id.clone()), Some("ami-1".into()));
    }
}
