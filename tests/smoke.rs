use lifostore::{CancelToken, MemDb, Storage};
use std::time::Duration;

#[test]
fn smoke() {
    let s = Storage::builder()
        .max_unflushed_age(Duration::from_millis(100))
        .build(MemDb::new());
    let t = CancelToken::new();
    for i in 0..10u8 {
        s.push(&t, vec![i]).unwrap();
    }
    assert_eq!(s.pop(&t).unwrap(), vec![9]);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(s.db().len(), 9);
    for i in (0..9u8).rev() {
        assert_eq!(s.pop(&t).unwrap(), vec![i]);
    }
    assert_eq!(s.try_pop().unwrap(), None);
    println!("{:?}", s.stats());
}
