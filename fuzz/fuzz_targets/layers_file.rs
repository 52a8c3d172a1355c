//! The `layers/<id>` parser: any text either parses to a chain that
//! renders back to text parsing to the same chain, or is refused.
#![no_main]

use aufs_model::ParentChain;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(chain) = ParentChain::parse("fuzz", text) {
        let again = ParentChain::parse("fuzz", &chain.render()).expect("a rendered chain parses");
        assert_eq!(again, chain);
        assert_eq!(chain.parent(), chain.ids().first());
    }
});
