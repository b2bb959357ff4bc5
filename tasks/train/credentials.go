package train

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/minio/minio-go/v7/pkg/credentials"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/gantry-ml/gantry/internal/exitcode"
	"github.com/gantry-ml/gantry/internal/kube"
	"github.com/gantry-ml/gantry/internal/objstore"
	"github.com/gantry-ml/gantry/internal/transient"
)

// Credentials are temporary S3 credentials.
type Credentials struct {
	AccessKeyID, SecretAccessKey, SessionToken string
}

// Minter issues temporary credentials limited by a session policy (STS AssumeRole).
type Minter interface {
	Mint(ctx context.Context, policy string, ttl time.Duration) (Credentials, error)
}

// STSMinter calls STS AssumeRole with the launcher's own credentials: MinIO at its S3 endpoint
// (RoleARN ignored), AWS at https://sts.amazonaws.com with a role ARN. The session policy
// intersects with what the parent may do: the result can never do more.
type STSMinter struct {
	Endpoint             string // STS endpoint, e.g. http://minio:9000 or https://sts.amazonaws.com
	RoleARN              string
	AccessKey, SecretKey string
}

// Mint implements Minter.
func (m STSMinter) Mint(ctx context.Context, policy string, ttl time.Duration) (Credentials, error) {
	if m.AccessKey == "" || m.SecretKey == "" {
		return Credentials{}, exitcode.Invalidf("scoped credentials: the launcher has no S3 credentials of its own (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY) to assume a role with")
	}
	c, err := credentials.NewSTSAssumeRole(m.Endpoint, credentials.STSAssumeRoleOptions{AccessKey: m.AccessKey, SecretKey: m.SecretKey,
		Policy: policy, RoleARN: m.RoleARN, RoleSessionName: "gantry-train", DurationSeconds: int(ttl.Seconds())})
	if err != nil {
		return Credentials{}, exitcode.Invalidf("--sts-endpoint %q: %v", m.Endpoint, err)
	}
	v, err := c.GetWithContext(&credentials.CredContext{Client: nil})
	if err != nil {
		if transient.IsError(err) {
			return Credentials{}, exitcode.Retryable(fmt.Errorf("minting the training Job's scoped S3 credentials: %w", err))
		}
		return Credentials{}, fmt.Errorf("minting the training Job's scoped S3 credentials (STS AssumeRole at %s): %w", m.Endpoint, err)
	}
	return Credentials{AccessKeyID: v.AccessKeyID, SecretAccessKey: v.SecretAccessKey, SessionToken: v.SessionToken}, nil
}

// ScopePolicy is the session policy of the training Job's credentials: read the dataset prefix,
// read and write the run's output prefix, nothing else (not the model registry, not the audit or
// run records, not another run's output).
func ScopePolicy(datasetURI, outputURI string) (string, error) {
	type stmt struct {
		Effect    string         `json:"Effect"`
		Action    []string       `json:"Action"`
		Resource  []string       `json:"Resource"`
		Condition map[string]any `json:"Condition,omitempty"`
	}
	var st []stmt
	add := func(uri string, actions ...string) error {
		u, err := objstore.Parse(uri)
		if err != nil {
			return err
		}
		if u.Scheme != "s3" {
			return exitcode.Invalidf("scoped credentials need s3:// URIs, not %s", uri)
		}
		prefix := strings.TrimSuffix(u.Key, "*")
		st = append(st,
			stmt{Effect: "Allow", Action: actions, Resource: []string{"arn:aws:s3:::" + u.Bucket + "/" + prefix + "*"}},
			stmt{Effect: "Allow", Action: []string{"s3:ListBucket"}, Resource: []string{"arn:aws:s3:::" + u.Bucket},
				Condition: map[string]any{"StringLike": map[string][]string{"s3:prefix": {prefix + "*"}}}})
		return nil
	}
	if datasetURI != "" {
		if err := add(datasetURI, "s3:GetObject"); err != nil {
			return "", fmt.Errorf("--dataset-uri: %w", err)
		}
	}
	// Delete too: a trainer may clean up what an earlier attempt of its own left there.
	if err := add(outputURI, "s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"); err != nil {
		return "", fmt.Errorf("--output-uri: %w", err)
	}
	b, _ := json.Marshal(map[string]any{"Version": "2012-10-17", "Statement": st})
	return string(b), nil
}

// CredentialsSecret is the Secret holding a training Job's scoped credentials.
func CredentialsSecret(job string) string { return job + "-s3" }

// credentialTTL covers the Job's deadline plus time to be scheduled, within what STS grants
// (AWS: at most 12 h for a role session).
func credentialTTL(timeout time.Duration) time.Duration {
	return min(max(timeout+15*time.Minute, 15*time.Minute), 12*time.Hour)
}

// writeScopedSecret mints the credentials and writes them into the Job's Secret (replacing what
// an interrupted earlier launcher left).
func (l *Launcher) writeScopedSecret(ctx context.Context, o *Options) error {
	policy, err := ScopePolicy(o.DatasetURI, o.OutputURI)
	if err != nil {
		return err
	}
	c, err := l.minter.Mint(ctx, policy, credentialTTL(o.Timeout))
	if err != nil {
		return err
	}
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: CredentialsSecret(o.JobName), Namespace: o.Namespace,
		Labels: map[string]string{LabelJob: o.JobName, "app.kubernetes.io/managed-by": "gantry"}},
		StringData: map[string]string{"AWS_ACCESS_KEY_ID": c.AccessKeyID, "AWS_SECRET_ACCESS_KEY": c.SecretAccessKey, "AWS_SESSION_TOKEN": c.SessionToken}}
	secrets := l.client.CoreV1().Secrets(o.Namespace)
	_, err = secrets.Create(ctx, s, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		// Left by a launcher that died before its Job, or owned by a failed Job being replaced:
		// the update drops its owner (the garbage collector must not take it with the old Job);
		// if the collector was first, create it anew.
		_, err = secrets.Update(ctx, s, metav1.UpdateOptions{})
		if apierrors.IsNotFound(err) {
			_, err = secrets.Create(ctx, s, metav1.CreateOptions{})
		}
	}
	if err != nil {
		return kube.Classify("writing the training Job's credentials Secret "+s.Name, err)
	}
	l.log.Info("minted scoped S3 credentials for the training Job", "secret", s.Name, "ttl", credentialTTL(o.Timeout))
	return nil
}

// ownSecret makes the Job own its credentials Secret, so both go together.
func (l *Launcher) ownSecret(ctx context.Context, o *Options, uid types.UID) {
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"ownerReferences": []metav1.OwnerReference{{
		APIVersion: "batch/v1", Kind: "Job", Name: o.JobName, UID: uid}}}})
	if _, err := l.client.CoreV1().Secrets(o.Namespace).Patch(ctx, CredentialsSecret(o.JobName), types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		l.log.Warn("could not make the Job own its credentials Secret (it outlives the Job; its credentials expire on their own)", "error", err)
	}
}
