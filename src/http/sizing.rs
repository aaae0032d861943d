//! Which size a track reads, and why: one home for it (issue 30).
//!
//! A request asks for a size in its query ([`SizeAsk`], parsed in `query.rs` with the other
//! parameters): the camera's own, the smallest at or above `?width=`/`?height=`, or
//! `?size=auto`. What that means for a given camera is decided here, in one key type,
//! [`Size`] (halvings and quality), which the transcoders ([`crate::tiers`]), the sized
//! snapshots (`shrink.rs`) and `/clip` share:
//!
//! - [`at_least`]: the smallest size at or above a width and height, for a picture of a known
//!   size (a snapshot, a clip, a viewer whose camera has sent a frame);
//! - [`Sizing`]: what one viewer's track keeps of its ask for its whole life: a `?width=` whose
//!   camera had sent nothing yet (decided at its first frame), or `?size=auto`'s measurement of
//!   the link ([`Adapt`], [`Meter`]) and the decisions it makes.
//!
//! The viewer (`viewer.rs`) asks at three moments: when the track is made ([`Sizing::new`]),
//! when the camera's picture size becomes known ([`Sizing::when_known`]), and after each frame
//! it writes (`?size=auto`, [`Sizing::auto`]); it then moves the track to the size it is told
//! (`Track::set_size`), and this module never touches a feed or a socket.

use super::adapt::{Adapt, Meter};
use super::query::{Fit, SizeAsk};
pub use crate::tiers::Size;
use std::time::Instant;

/// The smallest size at or above `width` x `height` of a picture of `source` pixels: the most
/// halvings that keep both at least that large (0: the picture's own size; at most
/// [`crate::scale::MAX_LEVEL`]). A 0 asks nothing of that side.
pub(super) fn level_for(source: (u16, u16), width: u16, height: u16) -> u8 {
    (0..=crate::scale::MAX_LEVEL)
        .rev()
        .find(|&l| (source.0 >> l) >= width.max(1) && (source.1 >> l) >= height.max(1))
        .unwrap_or(0)
}

/// The size `ask` gets for a picture of `source` pixels: the smallest at or above its
/// `?width=`/`?height=`, else the picture's own (`?size=auto` follows a link, which a picture
/// alone does not have).
pub(super) fn at_least(ask: SizeAsk, source: (u16, u16)) -> Size {
    let level = match ask.fit {
        Fit::AtLeast { width, height } => level_for(source, width, height),
        Fit::Source | Fit::Auto => 0,
    };
    Size {
        level,
        quality: ask.quality,
    }
}

/// One track's size ask, kept for the track's life.
pub(super) struct Sizing {
    /// The JPEG quality of the smaller sizes it reads.
    pub quality: u8,
    /// `?width=`/`?height=` of a camera that had sent no frame yet: decided at its first.
    pending: Option<(u16, u16)>,
    /// `?size=auto`: the size follows the link, as measured between its frames.
    auto: Option<(Adapt, Meter)>,
}

impl Default for Sizing {
    /// The camera's own frames, until a track is asked for a size.
    fn default() -> Sizing {
        Sizing {
            quality: crate::scale::DEFAULT_QUALITY,
            pending: None,
            auto: None,
        }
    }
}

impl Sizing {
    /// The ask, and the size to start with when it can be decided now: `dims` is the camera's
    /// picture size if it has sent a frame. `None`: the camera's own frames for now (the
    /// camera's size, `?size=auto`'s start, or a `?width=` waiting for the first frame, so a
    /// dashboard with one dead camera among twelve starts at once).
    pub fn new(ask: SizeAsk, dims: Option<(u16, u16)>, now: Instant) -> (Sizing, Option<Size>) {
        let mut sizing = Sizing {
            quality: ask.quality,
            ..Sizing::default()
        };
        let first = match (ask.fit, dims) {
            (Fit::Source, _) => None,
            (Fit::Auto, _) => {
                sizing.auto = Some((Adapt::new(crate::scale::MAX_LEVEL, now), Meter::default()));
                None
            }
            (Fit::AtLeast { .. }, Some(d)) => Some(at_least(ask, d)),
            (Fit::AtLeast { width, height }, None) => {
                sizing.pending = Some((width, height));
                None
            }
        };
        (sizing, first)
    }

    /// A `?width=` waits for the camera's first frame.
    pub fn is_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// `?size=auto`.
    pub fn is_auto(&self) -> bool {
        self.auto.is_some()
    }

    /// The camera's picture size is known now (`dims`): the size a pending `?width=` gets,
    /// once.
    pub fn when_known(&mut self, dims: Option<(u16, u16)>) -> Option<Size> {
        let ((width, height), d) = (self.pending?, dims?);
        self.pending = None;
        Some(Size {
            level: level_for(d, width, height),
            quality: self.quality,
        })
    }

    /// `?size=auto`'s measurement of the link, fed by the viewer around each frame.
    pub fn meter(&mut self) -> Option<&mut Meter> {
        self.auto.as_mut().map(|(_, m)| m)
    }

    /// `?size=auto`'s decisions: whether a look is due, and what it decides.
    pub fn auto(&mut self) -> Option<&mut Adapt> {
        self.auto.as_mut().map(|(a, _)| a)
    }

    /// Both at once, for a look: the adapter and the measurement it reads.
    pub fn auto_and_meter(&mut self) -> Option<(&mut Adapt, &mut Meter)> {
        self.auto.as_mut().map(|(a, m)| (a, m))
    }

    /// The size `level` at this track's quality.
    pub fn size(&self, level: u8) -> Size {
        Size {
            level,
            quality: self.quality,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_size_at_or_above() {
        let vga = (640, 480);
        assert_eq!(level_for(vga, 320, 0), 1);
        assert_eq!(level_for(vga, 321, 0), 0);
        assert_eq!(level_for(vga, 1, 1), 3);
        assert_eq!(level_for(vga, 0, 120), 2);
        assert_eq!(level_for(vga, 2000, 0), 0);
        assert_eq!(level_for((1280, 720), 300, 200), 1, "720 / 4 = 180 < 200");
        assert_eq!(level_for((1280, 720), 300, 180), 2);
    }

    #[test]
    fn a_width_waits_for_the_first_frame_and_is_decided_once() {
        let ask = super::super::query::size_ask("width=320&quality=80").unwrap();
        let now = Instant::now();
        let (mut s, first) = Sizing::new(ask, None, now);
        assert_eq!(first, None);
        assert_eq!(s.when_known(None), None, "still unknown");
        let known = s.when_known(Some((640, 480)));
        assert_eq!(
            known,
            Some(Size {
                level: 1,
                quality: 80
            })
        );
        assert_eq!(s.when_known(Some((640, 480))), None, "once");
        let (_, first) = Sizing::new(ask, Some((1280, 720)), now);
        assert_eq!(
            first,
            Some(Size {
                level: 2,
                quality: 80
            })
        );
        let auto = super::super::query::size_ask("size=auto").unwrap();
        let (mut s, first) = Sizing::new(auto, Some((640, 480)), now);
        assert!(first.is_none() && s.is_auto() && s.meter().is_some());
    }
}
