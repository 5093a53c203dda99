//! The refresh token store contract, on memory, the 0600 file (`embedded::`) and Secrets
//! Manager in moto server (`moto::`): a save is conditional on the version read, so of two
//! renewals that read the same version the second is refused and the first one's token is kept.

use std::sync::Arc;

use hunter_core::adapters::{
    FileRefreshTokenStore, MemoryRefreshTokenStore, SecretsManagerRefreshTokenStore,
};
use hunter_core::partner_center::{RefreshTokenStore, replace_refresh_token};
use hunter_core::ports::StoreError;
use hunter_core::secret::Secret;

async fn conflicting_saves_keep_the_newest_token(store: &dyn RefreshTokenStore) {
    assert_eq!(store.load().await.unwrap(), None, "nothing stored yet");
    let first = store.save(&Secret::new("rt-1"), None).await.unwrap();
    let read = store.load().await.unwrap().unwrap();
    assert_eq!((read.token.expose(), &read.version), ("rt-1", &first));
    assert!(
        matches!(
            store.save(&Secret::new("rt-late"), None).await,
            Err(StoreError::Conflict(_))
        ),
        "a save that expects nothing stored is refused once a token is"
    );

    // Two renewals read the same version; the first saves, the second is refused.
    let second = store
        .save(&Secret::new("rt-2"), Some(&read.version))
        .await
        .unwrap();
    assert_ne!(second, first);
    let refused = store.save(&Secret::new("rt-3"), Some(&read.version)).await;
    assert!(
        matches!(refused, Err(StoreError::Conflict(_))),
        "{refused:?}"
    );
    let newest = store.load().await.unwrap().unwrap();
    assert_eq!(
        newest.token.expose(),
        "rt-2",
        "the first renewal's token is kept"
    );
    assert_eq!(newest.version, second);

    // Saving against the version read again works; a sign-in replaces whatever is stored.
    store
        .save(&Secret::new("rt-4"), Some(&newest.version))
        .await
        .unwrap();
    replace_refresh_token(store, &Secret::new("signed-in"))
        .await
        .unwrap();
    assert_eq!(
        store.load().await.unwrap().unwrap().token.expose(),
        "signed-in"
    );
}

mod embedded {
    use super::*;

    #[tokio::test]
    async fn refresh_token_saves_are_conditional_in_memory() {
        conflicting_saves_keep_the_newest_token(&MemoryRefreshTokenStore::new()).await;
    }

    #[tokio::test]
    async fn refresh_token_saves_are_conditional_in_the_token_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileRefreshTokenStore::new(dir.path().join("data"));
        conflicting_saves_keep_the_newest_token(&store).await;
    }
}

mod moto {
    use super::*;

    #[tokio::test]
    async fn refresh_token_saves_are_conditional_in_secrets_manager() {
        let _moto = hunter_tests::moto_session().await;
        let sdk = hunter_tests::moto_sdk_config().await;
        let store = SecretsManagerRefreshTokenStore::ensure(&sdk, "hunter-contract-refresh-token")
            .await
            .unwrap();
        conflicting_saves_keep_the_newest_token(&store).await;
        // Found again by its ARN alone, as the functions do (HUNTER_PC_REFRESH_TOKEN_SECRET_ARN).
        let by_arn = SecretsManagerRefreshTokenStore::from_sdk(&sdk, store.secret_id());
        assert_eq!(
            by_arn.load().await.unwrap().unwrap().token.expose(),
            "signed-in"
        );
    }

    #[tokio::test]
    async fn concurrent_renewals_in_secrets_manager_never_lose_the_newest_token() {
        let _moto = hunter_tests::moto_session().await;
        let sdk = hunter_tests::moto_sdk_config().await;
        let store = Arc::new(
            SecretsManagerRefreshTokenStore::ensure(&sdk, "hunter-contract-race")
                .await
                .unwrap(),
        );
        let start = store.save(&Secret::new("rt-0"), None).await.unwrap();
        // Eight renewals that all read version `start`: exactly one wins.
        let saves = (0..8).map(|n| {
            let store = store.clone();
            let start = start.clone();
            tokio::spawn(async move {
                store
                    .save(&Secret::new(format!("rt-{}", n + 1)), Some(&start))
                    .await
                    .map(|version| (n + 1, version))
            })
        });
        let mut won = Vec::new();
        for save in saves {
            match save.await.unwrap() {
                Ok(winner) => won.push(winner),
                Err(StoreError::Conflict(_)) => {}
                Err(other) => panic!("{other}"),
            }
        }
        assert_eq!(won.len(), 1, "{won:?}");
        let kept = store.load().await.unwrap().unwrap();
        assert_eq!(kept.token.expose(), format!("rt-{}", won[0].0));
        assert_eq!(kept.version, won[0].1);
    }
}
