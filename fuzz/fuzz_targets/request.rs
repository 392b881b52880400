//! Every request body parser on the same bytes: `/predict`, `/predict/batch`, `/invocations` as
//! JSON and as CSV, the texts of an invocation, and the mapping of an invocation onto the
//! inputs of tensor graphs. None may panic; every rejection maps to a 4xx; every tensor that is
//! accepted has exactly as many values as its shape says and the shape the graph declares.
#![no_main]

use hotserve::http::error::ApiError;
use hotserve::model::element::Values;
use hotserve::model::tensor::tensors_for;
use hotserve::model::TensorDesc;
use hotserve::protocol::{parse_batch, parse_invocation, parse_predict, BadRequest, ContentType};
use libfuzzer_sys::fuzz_target;

fn client_error(error: BadRequest) {
    let status = ApiError::from(error).response().status();
    assert!(
        status.is_client_error(),
        "a rejected body answered {status}"
    );
}

fn desc(name: &str, dtype: &str, shape: &[i64]) -> TensorDesc {
    TensorDesc {
        name: name.to_string(),
        dtype: dtype.into(),
        shape: shape.to_vec(),
    }
}

fn len(data: &Values) -> usize {
    data.len()
}

fuzz_target!(|body: &[u8]| {
    if let Err(error) = parse_predict(body) {
        client_error(error);
    }
    if let Err(error) = parse_batch(body) {
        client_error(error);
    }
    // Graphs like the ones hotserve serves: one dynamic input, one fixed, two named ones.
    let graphs = [
        vec![desc("x", "float32", &[-1, -1])],
        vec![desc("x", "int64", &[-1, 3])],
        vec![desc("a", "int32", &[2, -1, 2]), desc("b", "float64", &[-1])],
    ];
    for content_type in [ContentType::Json, ContentType::Csv] {
        let invocation = match parse_invocation(body, content_type) {
            Ok(invocation) => invocation,
            Err(error) => {
                client_error(error);
                continue;
            }
        };
        if let Err(error) = invocation.texts() {
            client_error(error);
        }
        for inputs in &graphs {
            match tensors_for(inputs, invocation.clone()) {
                Ok(tensors) => {
                    assert_eq!(tensors.len(), inputs.len());
                    for (tensor, input) in tensors.iter().zip(inputs) {
                        assert_eq!(tensor.name, input.name);
                        assert_eq!(
                            tensor.shape.iter().product::<usize>(),
                            len(&tensor.data),
                            "tensor '{}' has shape {:?} and {} values",
                            tensor.name,
                            tensor.shape,
                            len(&tensor.data)
                        );
                        assert_eq!(tensor.shape.len(), input.shape.len());
                        for (&got, &want) in tensor.shape.iter().zip(&input.shape) {
                            assert!(want < 0 || got as i64 == want);
                        }
                    }
                }
                Err(error) => client_error(error),
            }
        }
    }
});
