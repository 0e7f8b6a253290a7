//! The API types as OpenAPI components (feature `openapi`): the coordinator merges
//! [`CoordinatorSchemas`] into the document it serves at [`super::routes::OPENAPI`], beside
//! the paths of its handlers.

use utoipa::OpenApi;

use super::error::{ErrorBody, ErrorCode};
use super::receipt::{Receipt, SignedReceipt};
use super::types::{
    Accounting, Assignment, Assignments, BlobInfo, Capabilities, DataAvailability, Dispute,
    Heartbeat, HeartbeatAck, Job, JobDetails, JobEvent, JobState, Liveness, MinuteStats, Model,
    NetworkStats, OutputAccepted, OutputsAccepted, Page, ReleaseAccepted, ReleaseRequest,
    Reputation, Requirement, Requirements, Unmatched, UnmatchedReason, UnmetRequirement, Worker,
    WorkerState,
};

/// Every request and response body of the coordinator's API, as OpenAPI schemas.
#[derive(OpenApi)]
#[openapi(components(schemas(
    Accounting,
    Assignment,
    Assignments,
    BlobInfo,
    Capabilities,
    DataAvailability,
    Dispute,
    ErrorBody,
    ErrorCode,
    Heartbeat,
    HeartbeatAck,
    Job,
    JobDetails,
    JobEvent,
    JobState,
    Liveness,
    MinuteStats,
    Model,
    NetworkStats,
    OutputAccepted,
    OutputsAccepted,
    Page<Job>,
    Page<Model>,
    Page<Worker>,
    Receipt,
    ReleaseAccepted,
    ReleaseRequest,
    Reputation,
    Requirement,
    Requirements,
    SignedReceipt,
    Unmatched,
    UnmatchedReason,
    UnmetRequirement,
    Worker,
    WorkerState,
)))]
pub struct CoordinatorSchemas;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemas_write_felts_amounts_and_digests_as_strings() {
        let doc = serde_json::to_value(CoordinatorSchemas::openapi()).unwrap();
        let schemas = &doc["components"]["schemas"];
        let job = &schemas["Job"]["properties"];
        for field in ["submitter", "fee", "input_hash"] {
            assert_eq!(job[field]["type"], "string", "Job.{field}: {}", job[field]);
        }
        let states = schemas["JobState"]["enum"].as_array().unwrap();
        assert_eq!(states.len(), 8);
        assert!(states.contains(&"queued".into()));
        let codes = schemas["ErrorCode"]["enum"].as_array().unwrap();
        assert!(codes.contains(&"digest_mismatch".into()));
        assert_eq!(job["input_hash"]["pattern"], "^[0-9a-fA-F]{64}$");
        assert_eq!(job["fee"]["pattern"], "^0x[0-9a-fA-F]{1,64}$");
        // A page's items are the item type's schema (inlined).
        assert_eq!(
            schemas["Page_Job"]["properties"]["items"]["items"]["properties"]["fee"],
            job["fee"]
        );
    }
}
