//! Arbitrary text through the notation parser (the wire inspector's input).
//! Invariants: no panic; what parses prints back to text that parses the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pbwire::banana::exactly_equal;
use pbwire::notation;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(elements) = notation::parse(text) {
        for e in &elements {
            let printed = notation::to_string(e);
            let back = notation::parse(&printed).expect("printed notation parses");
            assert_eq!(back.len(), 1);
            assert!(exactly_equal(&back[0], e));
        }
    }
});
