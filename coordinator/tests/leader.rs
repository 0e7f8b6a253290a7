//! The leader lease: one holder at a time, renewals keep the epoch, a takeover after expiry
//! moves it, and a deposed leader's index writes are refused in their own transaction.

use std::time::Duration;

use ciro_chain::events::EventCursor;
use ciro_coordinator::store::{Batch, PageStart, Store};

fn empty_page(block: u64) -> Batch {
    Batch {
        contract: "JobMgr".into(),
        cursor: EventCursor::at(block),
        events: 0,
        block,
        mutations: vec![],
        from: PageStart::Anywhere,
    }
}

async fn cursor_block(store: &Store) -> Option<u64> {
    store
        .cursor("JobMgr")
        .await
        .unwrap()
        .map(|(c, _)| c.from_block)
}

#[tokio::test]
async fn one_leader_at_a_time_and_a_deposed_leader_cannot_write_the_index() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::connect(&format!("sqlite://{}", dir.path().join("c.db").display()))
        .await
        .expect("store");
    let ttl = Duration::from_millis(300);
    let a = store
        .acquire_leadership("a", ttl)
        .await
        .unwrap()
        .expect("a leads");
    assert!(
        store.acquire_leadership("b", ttl).await.unwrap().is_none(),
        "b must wait"
    );
    let renewed = store
        .acquire_leadership("a", ttl)
        .await
        .unwrap()
        .expect("a renews");
    assert_eq!(renewed.epoch, a.epoch, "a renewal keeps the epoch");
    store
        .apply_fenced(&empty_page(5), "a", a.epoch)
        .await
        .expect("the leader writes");
    assert_eq!(cursor_block(&store).await, Some(5));

    tokio::time::sleep(ttl * 2).await;
    let b = store
        .acquire_leadership("b", ttl)
        .await
        .unwrap()
        .expect("b takes over");
    assert_eq!(b.epoch, a.epoch + 1, "a takeover moves the epoch");
    assert_eq!(store.leader().await.unwrap(), ("b".to_owned(), b.epoch));
    let refused = store
        .apply_fenced(&empty_page(9), "a", a.epoch)
        .await
        .unwrap_err();
    assert!(
        format!("{refused:#}").contains("no longer the leader"),
        "{refused:#}"
    );
    // a's refused page left the cursor where it was.
    assert_eq!(cursor_block(&store).await, Some(5));
    store
        .apply_fenced(&empty_page(7), "b", b.epoch)
        .await
        .expect("b writes");
    assert_eq!(cursor_block(&store).await, Some(7));

    // Released on shutdown: the next replica takes over at once.
    store.release_leadership("b").await.unwrap();
    let a2 = store
        .acquire_leadership("a", ttl)
        .await
        .unwrap()
        .expect("a again");
    assert_eq!(a2.epoch, b.epoch + 1);
}
