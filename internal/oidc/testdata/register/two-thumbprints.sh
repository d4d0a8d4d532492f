aws iam create-open-id-connect-provider \
  --url https://oidc.example.com/clusters/prod \
  --client-id-list sts.amazonaws.com \
  --thumbprint-list 9e99a48a9960b14926bb7f3b02e22da2b0ab7280 0123456789abcdef0123456789abcdef01234567
